//! `fault-proxy --upstream URL [--port N]`: the fault-injecting proxy of
//! `tests/support/faults.rs` as a process on 127.0.0.1, for the end-to-end
//! tests. Prints its port, then takes commands on standard input, one a line:
//! `fail <count> <fault> [<operation>]` (the next `count` requests, of
//! `operation` if given, fail with `fault`), `random <rate>`, `off`. Ends at
//! the end of its input or on SIGTERM.

use anyhow::{anyhow, bail, Context, Result};
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use tokio::io::{AsyncBufReadExt, BufReader};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn plan(line: &str) -> Result<Plan> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["off"] => Ok(Plan::Off),
        ["random", rate] => Ok(Plan::Random {
            rate: rate.parse()?,
            faults: Fault::ALL.to_vec(),
        }),
        ["fail", count, fault, rest @ ..] => Ok(Plan::FailNext {
            count: count.parse()?,
            fault: Fault::from_name(fault).ok_or_else(|| anyhow!("unknown fault {fault}"))?,
            // Operation names are few and fixed: leaking one is harmless.
            operation: rest
                .first()
                .map(|op| &*Box::leak(op.to_string().into_boxed_str())),
        }),
        _ => bail!("unknown command {line:?}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let upstream = arg(&args, "--upstream").context("--upstream URL is required")?;
    let port: u16 = arg(&args, "--port").map_or(Ok(0), |p| p.parse())?;
    let proxy = FaultProxy::start_on(port, &upstream, Plan::Off, 7).await?;
    println!("{}", proxy.port);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match plan(&line) {
            Ok(plan) => proxy.set_plan(plan),
            Err(e) => eprintln!("fault-proxy: {e}"),
        }
    }
    eprintln!("fault-proxy: {:?}", proxy.counts());
    Ok(())
}
