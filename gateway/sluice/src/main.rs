//! `sluice`: the binary that wires the stages together: configuration and CLI, the sources
//! (embedded, ClickHouse, Redis), the planner, authentication, the Flight SQL server and the
//! MCP endpoint beside it (`sluice mcp` serves the same tools on stdio).

mod cli;
mod clickhouse;
mod config;
mod generate;
mod load;
mod mcp;
mod probe;
mod serve;
mod telemetry;

use clap::Parser;

// jemalloc by default: under many concurrent queries it returns memory and fragments less than
// the system allocator (`bench/` compares the two; build with `--no-default-features` for glibc).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // `serve` sets up logging itself, once it knows whether traces go to a collector.
    let _telemetry = match &cli.command {
        cli::Command::Serve(_) => None,
        _ => telemetry::init(None).ok(),
    };
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Generate(args) => generate::run(args),
        cli::Command::Load(args) => load::run(args),
        cli::Command::Clickhouse(cli::ClickhouseCommand::Init(args)) => clickhouse::init(args),
        cli::Command::Mcp(args) => mcp::run(args),
        cli::Command::HashPassword => hash_password(),
        cli::Command::Probe(args) => probe::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `sluice hash-password`: one line of standard input (no echo needed: pipe it, or type it
/// and press Enter) to an Argon2id PHC string on standard output.
fn hash_password() -> Result<(), Box<dyn std::error::Error>> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    println!("{}", sluice_auth::hash_password(password)?);
    Ok(())
}
