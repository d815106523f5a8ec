//! `wisp`: the Wisp command line.

fn main() -> std::process::ExitCode {
    wisp_cli::main_entry()
}
