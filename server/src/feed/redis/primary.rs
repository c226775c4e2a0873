//! Where the Redis primary is: one URL, or asked of Redis Sentinel at every (re)connection.
//!
//! `--redis-url redis://host:port/db` names the server itself. With
//! `redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db]` the ingest asks
//! the Sentinels, in the order given, for `master-name`'s address (`SENTINEL
//! get-master-addr-by-name`) each time it connects, and checks with `ROLE` that the server it
//! was given is a primary: after a failover the session that lost the old primary ends, the
//! reconnection asks again and follows the new one. The password (and user) are the data
//! nodes'; the Sentinels are asked without. The port defaults to 26379 (Sentinel's own).
//!
//! Not the `redis` crate's `sentinel` feature: it connects to each Sentinel without a timeout
//! of its own, so one unreachable Sentinel host would hold every reconnection for the
//! operating system's connect timeout; here each Sentinel gets `--redis-timeout`.

use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};
use std::time::Duration;

/// Sentinel's default port.
const SENTINEL_PORT: u16 = 26379;

/// How the ingest finds the primary.
#[derive(Debug)]
pub enum RedisPrimary {
    /// A fixed server.
    Url(Client),
    /// The primary Sentinel names now.
    Sentinel(Sentinels),
}

/// A `redis+sentinel://` URL, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Sentinels {
    /// `host:port` of each Sentinel, in the order to ask them.
    pub addresses: Vec<String>,
    /// The monitored primary's name (`sentinel monitor <name> …`).
    pub master: String,
    /// `user:password@` (as written in the URL, still percent-encoded), for the data nodes.
    pub credentials: Option<String>,
    pub db: u32,
}

impl RedisPrimary {
    /// Parses `--redis-url`.
    pub fn parse(url: &str) -> Result<Self, String> {
        match url.strip_prefix("redis+sentinel://") {
            Some(rest) => Sentinels::parse(rest).map(RedisPrimary::Sentinel),
            None => Client::open(url)
                .map(RedisPrimary::Url)
                .map_err(|e| format!("bad Redis URL: {e}")),
        }
    }

    /// A client for the primary, as of now.
    pub async fn client(&self, timeout: Duration) -> RedisResult<Client> {
        match self {
            RedisPrimary::Url(client) => Ok(client.clone()),
            RedisPrimary::Sentinel(sentinels) => sentinels.primary(timeout).await,
        }
    }
}

impl Sentinels {
    fn parse(rest: &str) -> Result<Self, String> {
        let bad = |what: &str| {
            format!("bad Redis Sentinel URL: {what} (redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db])")
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials.to_owned()), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        let mut path = path.split('/');
        let master = path.next().unwrap_or_default();
        if master.is_empty() {
            return Err(bad("no master name"));
        }
        let db = match path.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| bad("the database is not a number"))?,
        };
        if path.next().is_some() {
            return Err(bad("more path than /master-name/db"));
        }
        let mut addresses = Vec::new();
        for host in hosts.split(',') {
            let address = match host.rsplit_once(':') {
                Some((name, port)) if !name.is_empty() && !name.ends_with(':') => {
                    let port: u16 = port.parse().map_err(|_| bad("a port is not a number"))?;
                    format!("{name}:{port}")
                }
                _ if !host.is_empty() => format!("{host}:{SENTINEL_PORT}"),
                _ => return Err(bad("an empty Sentinel address")),
            };
            addresses.push(address);
        }
        Ok(Sentinels {
            addresses,
            master: master.to_owned(),
            credentials,
            db,
        })
    }

    /// Asks each Sentinel in turn for the primary, and checks that it is one.
    async fn primary(&self, timeout: Duration) -> RedisResult<Client> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut failures = Vec::new();
        for sentinel in &self.addresses {
            match self.ask(sentinel, &config).await {
                Ok(client) => return Ok(client),
                Err(e) => failures.push(format!("{sentinel}: {e}")),
            }
        }
        Err(RedisError::from((
            ErrorKind::Io,
            "no Sentinel named a reachable primary",
            failures.join("; "),
        )))
    }

    async fn ask(&self, sentinel: &str, config: &AsyncConnectionConfig) -> RedisResult<Client> {
        let mut conn = Client::open(format!("redis://{sentinel}/"))?
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let address: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await?;
        let Some((host, port)) = address else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "the Sentinel does not know this master",
                self.master.clone(),
            )));
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let credentials = self
            .credentials
            .as_deref()
            .map(|c| format!("{c}@"))
            .unwrap_or_default();
        let client = Client::open(format!("redis://{credentials}{host}:{port}/{}", self.db))?;
        // A Sentinel may still name a primary that has just been demoted (or is gone).
        let mut primary = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut primary).await?;
        let role: Option<String> = role
            .first()
            .and_then(|r| redis::from_redis_value_ref(r).ok());
        match role.as_deref() {
            Some("master") => Ok(client),
            _ => Err(RedisError::from((
                ErrorKind::Client,
                "the server the Sentinel named is not a primary",
                format!("{host}:{port}"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let RedisPrimary::Sentinel(s) =
            RedisPrimary::parse("redis+sentinel://:pw@10.0.0.1:5000,sentinel-b,[::1]:5001/feed/2")
                .unwrap()
        else {
            panic!("a Sentinel URL");
        };
        assert_eq!(
            s,
            Sentinels {
                addresses: vec![
                    "10.0.0.1:5000".into(),
                    "sentinel-b:26379".into(),
                    "[::1]:5001".into()
                ],
                master: "feed".into(),
                credentials: Some(":pw".into()),
                db: 2,
            }
        );
        let RedisPrimary::Sentinel(s) = RedisPrimary::parse("redis+sentinel://h:1/m").unwrap()
        else {
            panic!("a Sentinel URL");
        };
        assert_eq!((s.db, s.credentials), (0, None));
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1,,h:2/m",
            "redis+sentinel://h:1/m/zero",
            "redis+sentinel://h:1/m/0/extra",
        ] {
            assert!(RedisPrimary::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            RedisPrimary::parse("redis://127.0.0.1:6379/0"),
            Ok(RedisPrimary::Url(_))
        ));
    }
}
