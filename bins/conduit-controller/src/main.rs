//! `conduit-controller`: see the `conduit-app-controller` crate.

#![forbid(unsafe_code)]

use clap::Parser;
use conduit_app_admin::{shutdown_signal, trace};
use conduit_app_controller::Args;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    let log_level = match trace::init(&args.log, "--log") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("conduit-controller: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conduit-controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match conduit_app_controller::bind(args, log_level).await {
            Ok(bound) => {
                bound.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("conduit-controller: {e}");
                ExitCode::from(2)
            }
        }
    })
}
