use std::time::Instant;

use sluice_catalog::GenerateConfig;

use crate::cli::GenerateArgs;

pub(crate) fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

pub(crate) fn run(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.users == 0 || args.years == 0 || args.artists == 0 {
        return Err("--users, --years and --artists must be at least 1".into());
    }
    let config = GenerateConfig {
        users: args.users,
        years: args.years,
        seed: args.seed,
        end: args.end.unwrap_or_else(today),
        artists: args.artists,
    };
    let started = Instant::now();
    let manifest = sluice_catalog::generate(&config, &args.out)?;
    println!(
        "generated {} events of {} listeners ({} .. {}), {} tracks by {} artists into {} in {:.1}s",
        manifest.events,
        manifest.users,
        manifest.start,
        manifest.end,
        manifest.tracks,
        manifest.artists,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
