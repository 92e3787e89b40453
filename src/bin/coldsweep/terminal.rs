//! The terminal a progress bar shares with everything else written: report
//! lines on stdout, log lines on stderr. Each of them erases the bar first
//! (the bar's next tick draws it again below), under one lock, so that no
//! frame lands in the middle of a line.

use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};

/// Erases the line the cursor is on: carriage return, then clear line.
pub(crate) const ERASE: &str = "\r\x1b[2K";

/// Whether a bar is on the screen right now; held while anything writes to
/// the terminal.
static TERMINAL: Mutex<Drawn> = Mutex::new(Drawn { bar: false });

pub(crate) struct Drawn {
    /// A bar line is on screen (the cursor sits at its end).
    bar: bool,
}

pub(crate) fn terminal() -> MutexGuard<'static, Drawn> {
    TERMINAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drawn {
    /// The bar was just drawn (the cursor sits at its end).
    pub(crate) fn set_drawn(&mut self) {
        self.bar = true;
    }

    /// Erase the bar if it is drawn; the next tick draws it again.
    pub(crate) fn erase(&mut self) {
        if self.bar {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(ERASE.as_bytes());
            let _ = err.flush();
            self.bar = false;
        }
    }
}

/// Run `write` (a line to stdout or stderr) with the bar out of its way.
pub(crate) fn with_terminal<R>(write: impl FnOnce() -> R) -> R {
    let mut drawn = terminal();
    drawn.erase();
    write()
}

/// Where log lines go: stderr, with the bar erased first.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

/// Stderr, locked for one log event.
pub(crate) struct LockedStderr {
    // Held for the event so that no redraw lands in the middle of it.
    _drawn: MutexGuard<'static, Drawn>,
    err: std::io::StderrLock<'static>,
}

impl std::io::Write for LockedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.err.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = LockedStderr;

    fn make_writer(&'a self) -> LockedStderr {
        let mut drawn = terminal();
        drawn.erase();
        LockedStderr {
            _drawn: drawn,
            err: std::io::stderr().lock(),
        }
    }
}
