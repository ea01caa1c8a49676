//! The `careloop` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = careloop::Cli::parse();
    match careloop::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The one place a failure reaches a person: print the whole cause chain.
            eprintln!("careloop: {err:#}");
            if err.downcast_ref::<careloop::BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
