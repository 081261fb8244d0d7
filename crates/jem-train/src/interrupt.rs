//! SIGINT / SIGTERM during training: the first asks the run to stop after the current
//! iteration, write its checkpoint and summary and return; a second exits at once.
//!
//! A library must not take signals over on its own: the `jem` binary calls [`install`];
//! any program can instead call [`request`] (from its own handler or another thread).

use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Asks every running [`crate::Trainer`] to stop at the end of its current iteration.
pub fn request() {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Whether a stop was requested (by a signal or [`request`]).
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

#[cfg(unix)]
extern "C" fn on_signal(sig: libc::c_int) {
    // only async-signal-safe calls here: an atomic, write(2) and _exit(2)
    if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        let msg = b"\njem: stopping after this iteration and writing a checkpoint (signal again to exit at once)\n";
        // SAFETY: write(2) on stderr with a valid buffer
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    } else {
        // SAFETY: _exit(2) ends the process without running anything else
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Installs the handlers of SIGINT and SIGTERM (a no-op where there are no signals).
pub fn install() -> std::io::Result<()> {
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: installing a handler that only does async-signal-safe work
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
