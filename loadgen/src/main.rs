//! `loadgen`: see the library docs.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = loadgen::cli::Cli::parse();
    let _ = loadgen::report::git_commit(); // the tree as the run starts
                                           // As a shell would need it typed, so command.txt reruns as written.
    let command = std::iter::once("loadgen".to_owned())
        .chain(
            std::env::args()
                .skip(1)
                .map(|a| loadgen::report::shell_quote(&a)),
        )
        .collect::<Vec<_>>()
        .join(" ");
    match loadgen::main_with(&cli, command) {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(record)) => {
            print!("{}", loadgen::report::text(&record));
            if record.figures.lost > 0 {
                eprintln!("loadgen: {} deliveries lost", record.figures.lost);
                return std::process::ExitCode::from(3);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
