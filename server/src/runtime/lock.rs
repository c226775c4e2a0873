//! One policy for a poisoned lock: take it as it is.
//!
//! A `std::sync` lock is poisoned when a thread panicked while holding it. Every critical section
//! in this server is short and leaves its data whole at each step (a push, a counter, a swap, a
//! map insert: nothing that a panic halfway leaves for a later reader to misread), and a panic is
//! already a bug that the process logs. Refusing every later caller would turn that one bug into
//! an outage, so a poisoned lock is recovered, here and only here: every lock is taken through
//! these methods.

use std::sync::{
    Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
};

/// [`Mutex::lock`] and [`Mutex::try_lock`], recovering a poisoned lock.
pub trait MutexExt<T: ?Sized> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
    /// The lock if it is free now.
    fn try_lock_or_recover(&self) -> Option<MutexGuard<'_, T>>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_lock_or_recover(&self) -> Option<MutexGuard<'_, T>> {
        match self.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// [`RwLock::read`] and [`RwLock::write`], recovering a poisoned lock.
pub trait RwLockExt<T: ?Sized> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_taken_as_it_is() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _m = m2.lock().unwrap();
            let _l = l2.write().unwrap();
            panic!("poisons both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *m.lock_or_recover() += 1;
        *m.try_lock_or_recover().unwrap() += 1;
        *l.write_or_recover() += 1;
        assert_eq!((*m.lock_or_recover(), *l.read_or_recover()), (3, 2));
    }
}
