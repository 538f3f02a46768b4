//! What one idle ractor actor costs in memory, with walleti's ractor features and allocator:
//! spawns 100,000 actors holding a `u64` each (linked to a supervisor with `linked`) and prints
//! the resident memory they added, per actor. The floor under a wallet actor's footprint.
//!
//!   cargo run --release --example actor_memory [linked]

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACTORS: u64 = 100_000;

struct Idle;

impl Actor for Idle {
    type Msg = u64;
    type State = u64;
    type Arguments = u64;

    async fn pre_start(&self, _: ActorRef<u64>, state: u64) -> Result<u64, ActorProcessingErr> {
        Ok(state)
    }
}

struct Supervisor;

impl Actor for Supervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Resident memory in bytes (Linux).
fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no resident field in /proc/self/statm"))?
        .parse()?;
    Ok(pages * 4096)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let linked = std::env::args().nth(1).as_deref() == Some("linked");
    let (supervisor, _) = Actor::spawn(None, Supervisor, ()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = resident_bytes()?;
    let mut actors = Vec::with_capacity(ACTORS as usize);
    for index in 0..ACTORS {
        let (actor, _) = if linked {
            Actor::spawn_linked(None, Idle, index, supervisor.get_cell()).await?
        } else {
            Actor::spawn(None, Idle, index).await?
        };
        actors.push(actor);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident_bytes()?;
    println!(
        "{ACTORS} idle actors{}: {} bytes each, resident {} MiB",
        if linked { " (linked)" } else { "" },
        after.saturating_sub(before) / ACTORS,
        after >> 20
    );
    for actor in actors {
        actor.stop(None);
    }
    supervisor.stop(None);
    Ok(())
}
