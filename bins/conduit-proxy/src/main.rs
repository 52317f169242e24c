//! `conduit-proxy`: see the `conduit-app-proxy` crate for its configuration.

#![forbid(unsafe_code)]

use conduit_app_proxy::{malloc, resolve::Dns, runtime, shutdown_signal, trace, Config, Proxy};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    if let Err(e) = malloc::reexec_with_tunables() {
        eprintln!("conduit-proxy: running with glibc's default malloc tunables: {e}");
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conduit-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let log_level = match trace::init(&config.log, "CONDUIT_PROXY_LOG") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("conduit-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(config.cores) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conduit-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let bound = match Proxy::bind(config, Arc::new(Dns), log_level) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("conduit-proxy: {e}");
                return ExitCode::from(2);
            }
        };
        eprintln!(
            "conduit-proxy: outbound {} inbound {} admin {}",
            bound.outbound_addr(),
            bound.inbound_addr(),
            bound.admin_addr()
        );
        bound.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
