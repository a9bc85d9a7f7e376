//! `fault-proxy --upstream URL [--port N] [--fail-next N --fault NAME] [--rate R]`:
//! the fault-injecting proxy of `tests/support/faults.rs` as a process on
//! 127.0.0.1. Prints its port, then serves until it is stopped.

use anyhow::{anyhow, Context, Result};
use apikeys_tests::faults::{Fault, FaultProxy, Plan};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let upstream = arg(&args, "--upstream").context("--upstream URL is required")?;
    let port: u16 = arg(&args, "--port").map_or(Ok(0), |p| p.parse())?;
    let fault = match arg(&args, "--fault") {
        Some(name) => Some(Fault::from_name(&name).ok_or_else(|| anyhow!("unknown fault {name}"))?),
        None => None,
    };
    let plan = match (arg(&args, "--fail-next"), arg(&args, "--rate"), fault) {
        (Some(count), _, Some(fault)) => Plan::FailNext {
            count: count.parse()?,
            fault,
            operation: None,
        },
        (None, Some(rate), fault) => Plan::Random {
            rate: rate.parse()?,
            faults: fault.map_or(Fault::ALL.to_vec(), |f| vec![f]),
        },
        _ => Plan::Off,
    };
    let proxy = FaultProxy::start_on(port, &upstream, plan, 7).await?;
    println!("{}", proxy.port);
    tokio::signal::ctrl_c().await?;
    eprintln!("fault-proxy: {:?}", proxy.counts());
    Ok(())
}
