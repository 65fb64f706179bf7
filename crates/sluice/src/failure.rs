//! A command's failure, with the exit code the contract gives it (1 rejected input, 2 usage
//! or configuration error), and the one failure that is no failure: a closed pipe.

use std::sync::atomic::{AtomicBool, Ordering};

/// A failure with the exit code the contract gives it.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { code: 1, error: e.into() }
    }
}

/// Set once a write to stdout found its reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line of a command's output (`outln!`). A closed pipe (`sluice imports | head -1`)
/// is not the command's failure: the rest of its output is dropped, and the command finishes
/// its work and exits with its own code (an import still imports every file, a validation
/// that rejects still exits 1). Other write errors are returned.
pub fn out_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Whether stdout's reader went away: seen by a write, or (for output streamed by other
/// means) by asking the kernel about the pipe.
pub fn stdout_closed() -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return true;
    }
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, a zero timeout.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & libc::POLLERR != 0
}

/// A failure that is only the reader of our output going away (streamed output such as
/// `sluice records`, which writes through its own buffer): nothing more to say, exit 0.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken && stdout_closed()
}
