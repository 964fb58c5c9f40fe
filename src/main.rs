//! The `sigyard` binary: parse the configuration, start the server, and turn signals into
//! control calls (SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload the TLS certificate).
//! Nothing else lives here.

use sigyard::config::{self, LogLevel, Parsed};
use sigyard::log::{self, Level};
use sigyard::{error, info, warn, Server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Help(text)) | Ok(Parsed::Version(text)) | Ok(Parsed::PrintConfig(text)) => {
            say(&mut std::io::stdout(), &text);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::CheckConfig(cfg)) => {
            let checked = Server::new(cfg).and_then(|s| s.check_files());
            return match checked {
                Ok(()) => {
                    say(
                        &mut std::io::stdout(),
                        "sigyard: the configuration is valid",
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say(&mut std::io::stderr(), &format!("sigyard: {e}"));
                    ExitCode::from(2)
                }
            };
        }
        Err(e) => {
            say(
                &mut std::io::stderr(),
                &format!("sigyard: {e}\nTry 'sigyard --help'."),
            );
            return ExitCode::from(2);
        }
    };
    log::set_level(match cfg.log_level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warn,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    });
    let shutdown_timeout = cfg.shutdown_timeout;

    // Block the control signals before any thread starts, so every reactor inherits the mask
    // and only this thread receives them (through sigwait below).
    let signals = signals::block(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);

    let server = match Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            say(&mut std::io::stderr(), &format!("sigyard: {e}"));
            return ExitCode::from(2);
        }
    };
    let handle = match server.start() {
        Ok(h) => h,
        Err(e) => {
            say(&mut std::io::stderr(), &format!("sigyard: {e}"));
            // An unreachable cluster Redis is a configuration problem, like a bad option.
            let status = if matches!(e, sigyard::StartError::Cluster(_)) {
                2
            } else {
                1
            };
            return ExitCode::from(status);
        }
    };
    loop {
        match signals::wait(&signals) {
            libc::SIGHUP => match handle.reload_tls() {
                Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => warn!("SIGHUP: TLS certificate not reloaded: {e}"),
            },
            sig => {
                info!(
                    "signal {sig}: shutting down (draining up to {:?})",
                    shutdown_timeout
                );
                handle.shutdown(shutdown_timeout);
                break;
            }
        }
    }
    handle.join();
    info!("stopped");
    ExitCode::SUCCESS
}

/// Writes `text` and a newline. A stream that is closed (a reader that stopped early, as in
/// `sigyard --help | head`) ends the output quietly: there is no one left to tell.
fn say(stream: &mut dyn std::io::Write, text: &str) {
    let _ = writeln!(stream, "{text}");
}

/// Synchronous signal handling with `sigwait`: no handler runs in signal context.
mod signals {
    use super::error;

    pub struct Set(libc::sigset_t);

    pub fn block(sigs: &[libc::c_int]) -> Set {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
        // pthread_sigmask only changes this thread's mask (inherited by threads spawned later).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in sigs {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                error!("could not block signals; SIGTERM will kill the process without draining");
            }
            Set(set)
        }
    }

    pub fn wait(set: &Set) -> libc::c_int {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` was initialised by `block`; sigwait writes one int.
        let rc = unsafe { libc::sigwait(&set.0, &mut sig) };
        if rc != 0 {
            error!("sigwait failed ({rc}); shutting down");
            return libc::SIGTERM;
        }
        sig
    }
}
