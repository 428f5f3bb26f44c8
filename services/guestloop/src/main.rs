//! `guestloop`: runs the whole suite (`up`), one service (`serve`), migrations (`migrate`),
//! mints development tokens (`token`), imports PMS stays (`import`) and generates load (`bench`). Everything it runs lives in
//! the service and kit libraries; this binary only wires them together.

mod bench;
mod bench_import;
mod bench_intake;
mod bench_kpi;
mod bench_overload;
mod bench_scorecard;
mod cli;
mod dev_secret;
mod import;
mod load;
mod suite;

use clap::Parser;

/// gRPC servers allocate and free many small buffers per call (messages, rows, strings) across
/// threads; mimalloc spends less CPU on that than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
