//! The HTTP/2 limits (`--h2-*`) as h2's server builder, and the same limits on hyper's HTTP/2.

use crate::config::Http2Limits;

/// The HTTP/2 limits (`--h2-*`, [`Http2Limits`]), applied in one place to this driver's h2 and,
/// for `--http2-driver hyper`, to hyper's HTTP/2.
impl Http2Limits {
    /// An h2 server builder with these limits (h2's own defaults are unlike hyper's: 64 KiB
    /// windows, unlimited streams, 16 MiB header lists).
    pub(super) fn h2_builder(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.h2_max_header_list_size)
            .initial_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .max_send_buffer_size(self.h2_max_send_buffer)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_resets)
            .max_local_error_reset_streams(Some(self.h2_max_local_error_resets));
        builder
    }

    /// The same limits on hyper's HTTP/2.
    pub(crate) fn apply_to_hyper<E>(
        &self,
        builder: &mut hyper_util::server::conn::auto::Http2Builder<'_, E>,
    ) {
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.h2_max_header_list_size)
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .max_send_buf_size(self.h2_max_send_buffer)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_resets)
            .max_local_error_reset_streams(self.h2_max_local_error_resets);
    }
}
