//! `sei-operator plan -f node.yaml` (or `group.yaml`): the plan a manifest would get (local
//! platform settings), as a table or as the JSON stored in `status.plan`.
//!
//! A SeiNodeDeployment without a status is previewed as the controller will see it once every
//! child exists: its genesis plan (when it has `spec.genesis`), and the plan a template change
//! would start with its update strategy.

use anyhow::Result;
use sei_operator::api::seinode::TaskPlan;
use sei_operator::api::seinodedeployment::{RolloutStatus, SeiNodeDeploymentStatus};
use sei_operator::group::planner::{GroupPlanDecision, child_names, deployment_plan, entrant_names, resolve_group_plan, template_hash};
use sei_operator::node::planner::{Observed, PlanDecision, resolve_plan};
use sei_operator::platform::PlatformConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The SeiNode or SeiNodeDeployment manifest (YAML or JSON). A `status` in it is taken into
    /// account (phase, active plan, resolved peers, incumbents, rollout).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Print the plan as JSON (as it is stored in `status.plan`).
    #[arg(long)]
    pub json: bool,
}

fn phase_or_none(p: Option<sei_operator::api::seinode::SeiNodePhase>) -> String {
    p.map_or_else(|| "none".to_string(), |p| p.to_string())
}

pub fn run(args: PlanArgs) -> Result<()> {
    if super::manifest_kind(&args.file)?.as_deref() == Some("SeiNodeDeployment") {
        return run_group(&args);
    }
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
            print_tasks(&plan);
        }
    }
    Ok(())
}

fn print_tasks(plan: &TaskPlan) {
    for (i, t) in plan.tasks.iter().enumerate() {
        let params = t.params.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "null".into());
        let retries = if t.max_retries > 0 { format!("  maxRetries {}", t.max_retries) } else { String::new() };
        println!("{:>3}. {:<27} {}  {params}{retries}", i + 1, t.task_type, t.id);
    }
}

fn run_group(args: &PlanArgs) -> Result<()> {
    let mut group = super::read_group(&args.file)?;
    let name = group.metadata.name.clone().unwrap_or_default();
    let fresh = group.status.is_none();
    if fresh {
        // As the controller will see it once every child exists.
        group.status = Some(SeiNodeDeploymentStatus { incumbent_nodes: child_names(&group), ..Default::default() });
    }
    let mut plans: Vec<(String, TaskPlan)> = Vec::new();
    let new_id = || uuid::Uuid::new_v4().to_string();
    match resolve_group_plan(&group, &new_id())? {
        GroupPlanDecision::Resume => println!("the group's active plan resumes; no new plan"),
        GroupPlanDecision::Idle if !fresh => println!("nothing to do: no new plan"),
        GroupPlanDecision::Idle => {}
        GroupPlanDecision::New { plan, kind } => plans.push((format!("{} plan of SeiNodeDeployment {name}", kind.as_str()), plan)),
    }
    if fresh {
        // What a template change would start.
        let generation = group.metadata.generation.unwrap_or(1) + 1;
        let rollout = Some(RolloutStatus {
            strategy: group.spec.update_strategy.strategy_type,
            target_hash: template_hash(&group),
            incumbent_nodes: child_names(&group),
            entrant_nodes: entrant_names(&group, generation),
            incumbent_revision: Some((generation - 1).to_string()),
            entrant_revision: Some(generation.to_string()),
            ..Default::default()
        });
        group.status.get_or_insert_with(Default::default).rollout = rollout;
        let (plan, kind) = deployment_plan(&group, &new_id())?;
        plans.push((format!("{} on a template change (revision {generation})", kind.as_str()), plan));
    }
    if args.json {
        let list: Vec<&TaskPlan> = plans.iter().map(|(_, p)| p).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if fresh {
        println!("SeiNodeDeployment {name}: children {}", child_names(&group).join(", "));
    }
    for (title, plan) in &plans {
        println!("{title}: plan {}", plan.id);
        print_tasks(plan);
    }
    Ok(())
}
