//! `wisp`, the Wisp command line: one-shot commands for scripts and people
//! (register, id, invite, verify, friend, send, recv) and `wisp chat`, the
//! full-screen terminal chat. Protocol logic lives in the SDK
//! ([`wisp_client`]); this crate parses arguments, asks for the passphrase,
//! prints results and maps failures to one-line errors and exit codes.
//!
//! # Layout
//! - [`args`]: the command-line interface (clap).
//! - [`commands`]: what each command does, on top of the SDK.
//! - `chat`: `wisp chat`, the full-screen terminal chat (ratatui): its
//!   state (`chat::model`), its drawing (`chat::ui`), and the two tasks
//!   that run it.
//! - [`output`]: errors with exit codes, JSON lines, and how a person is
//!   named (petname, their display name, or id).
//! - [`safe`]: text from the network made safe to print in a terminal.
//! - `qr`: QR codes drawn in the terminal by `qrcode`'s Unicode renderer
//!   (invitations, safety numbers).

pub mod args;
mod chat;
pub mod commands;
pub mod output;
mod qr;
pub mod safe;

/// Parses the command line, runs the command, and returns the process exit
/// code; errors are printed to stderr as one line.
pub fn main_entry() -> std::process::ExitCode {
    use clap::Parser;
    let args = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(output::EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Server and network text is part of many errors.
            eprintln!("{}: {}", error.label(), safe::line(&error.to_string()));
            std::process::ExitCode::from(error.exit_code())
        }
    }
}
