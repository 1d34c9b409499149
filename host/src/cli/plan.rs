//! `sei-operator plan -f node.yaml`: the plan a manifest would get (local platform settings), as
//! a table or as the JSON stored in `status.plan`.

use anyhow::Result;
use sei_operator::node::planner::{Observed, PlanDecision, resolve_plan};
use sei_operator::platform::PlatformConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The SeiNode manifest (YAML or JSON). A `status` in it is taken into account (phase,
    /// active plan, resolved peers).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Print the plan as JSON (as it is stored in `status.plan`).
    #[arg(long)]
    pub json: bool,
}

fn phase_or_none(p: Option<sei_operator::node::crd::SeiNodePhase>) -> String {
    p.map_or_else(|| "none".to_string(), |p| p.to_string())
}

pub fn run(args: PlanArgs) -> Result<()> {
    let node = super::typed_node(&super::read_node(&args.file)?, &args.file)?;
    let plan_id = uuid::Uuid::new_v4().to_string();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    match resolve_plan(&node, &Observed::default(), &PlatformConfig::for_local(), &plan_id, &now)? {
        PlanDecision::Resume => println!("the node's active plan resumes; no new plan"),
        PlanDecision::Idle => println!("nothing to do: no new plan"),
        PlanDecision::New { plan, .. } if args.json => println!("{}", serde_json::to_string_pretty(&plan)?),
        PlanDecision::New { plan, phase, reason } => {
            println!(
                "plan {} ({reason}; node phase {phase}, on success {}, on failure {})",
                plan.id,
                phase_or_none(plan.target_phase),
                phase_or_none(plan.failed_phase)
            );
            for (i, t) in plan.tasks.iter().enumerate() {
                let params = t.params.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "null".into());
                let retries = if t.max_retries > 0 { format!("  maxRetries {}", t.max_retries) } else { String::new() };
                println!("{:>3}. {:<26} {}  {params}{retries}", i + 1, t.task_type, t.id);
            }
        }
    }
    Ok(())
}
