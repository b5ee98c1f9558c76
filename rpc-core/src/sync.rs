//! The one way the framework takes a `std::sync::Mutex` or `RwLock`: [`lock`], [`read`] and [`write`], which
//! take over a lock that a panicking thread left poisoned. Every mutex of rpc-core and rpc-registry guards state that stays whole if its holder
//! panics (each is held only for plain updates that cannot fail halfway), so a panic in one call must not turn
//! every later call into a second panic.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering its guard if a thread panicked while holding it.
///
/// ```
/// let counter = std::sync::Mutex::new(0);
/// *rpc_core::sync::lock(&counter) += 1;
/// assert_eq!(*rpc_core::sync::lock(&counter), 1);
/// ```
#[inline]
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes `lock` for reading, recovering it if a writer panicked.
#[inline]
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes `lock` for writing, recovering it if a writer panicked.
#[inline]
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutex_poisoned_by_a_panic_is_taken_over() {
        let shared = std::sync::Arc::new(Mutex::new(vec![1]));
        let other = std::sync::Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let _guard = other.lock().unwrap();
            panic!("holder panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        lock(&shared).push(2);
        assert_eq!(*lock(&shared), [1, 2]);
    }
}
