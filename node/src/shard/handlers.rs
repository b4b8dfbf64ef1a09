//! The shard's message handlers (the messages are in [`crate::messages`]): each takes
//! its message apart and calls the method of the module that does the job.

use super::Shard;
use crate::messages::{
    ArrivalSaved, AttachNetwork, Checked, GetHistory, GetIndividual, GetLineage, GetMetrics,
    GetMigrations, GetPeers, GetPopulation, GetStatus, JobDone, MigrationAnswer, NextJob, Progress,
    PullAnswer, PullAnswered, RetryPull, Shutdown, WorkerStopped,
};
use crate::network::NetEvent;
use crate::view::WorkerActivity;
use actix::{AsyncContext, Context, Handler, MessageResult, StreamHandler};

impl Handler<NextJob> for Shard {
    type Result = MessageResult<NextJob>;

    fn handle(&mut self, msg: NextJob, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.next_job(msg.worker))
    }
}

impl Handler<Progress> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Progress, _: &mut Context<Self>) {
        if let Some(w) = self.workers.get_mut(msg.worker) {
            if w.individual == Some(msg.id) {
                w.step = msg.step;
                w.steps = msg.steps;
                w.loss = Some(msg.loss);
            }
        }
        self.reporter
            .progress(msg.worker, msg.id, msg.step, msg.steps, msg.loss);
        self.enforce_time_cap(msg.id, msg.step, msg.steps);
    }
}

impl Handler<JobDone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: JobDone, _: &mut Context<Self>) {
        self.job_done(msg.worker, msg.id, msg.result);
    }
}

impl Handler<Checked> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Checked, _: &mut Context<Self>) {
        self.checked(msg.worker, msg.id, msg.result);
    }
}

impl Handler<WorkerStopped> for Shard {
    type Result = ();

    fn handle(&mut self, msg: WorkerStopped, _: &mut Context<Self>) {
        if let Some(w) = self.workers.get_mut(msg.worker) {
            w.state = WorkerActivity::Stopped;
            w.individual = None;
        }
    }
}

impl Handler<Shutdown> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.leave(msg.reason, ctx);
    }
}

impl Handler<GetStatus> for Shard {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<GetPopulation> for Shard {
    type Result = MessageResult<GetPopulation>;

    fn handle(&mut self, msg: GetPopulation, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.population_view(msg.all))
    }
}

impl Handler<GetIndividual> for Shard {
    type Result = MessageResult<GetIndividual>;

    fn handle(&mut self, msg: GetIndividual, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.individual_view(msg.0))
    }
}

impl Handler<GetLineage> for Shard {
    type Result = MessageResult<GetLineage>;

    fn handle(&mut self, msg: GetLineage, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.lineage_view(msg.0))
    }
}

impl Handler<GetHistory> for Shard {
    type Result = MessageResult<GetHistory>;

    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.history(msg.since_ms))
    }
}

impl Handler<GetMetrics> for Shard {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.metrics())
    }
}

impl StreamHandler<NetEvent> for Shard {
    fn handle(&mut self, event: NetEvent, _: &mut Context<Self>) {
        self.on_net_event(event);
    }

    /// The network's event loop has ended: the node goes on alone (the default would
    /// stop the actor).
    fn finished(&mut self, _: &mut Context<Self>) {
        self.reporter.line("the network stopped; going on alone");
    }
}

impl Handler<AttachNetwork> for Shard {
    type Result = ();

    fn handle(&mut self, msg: AttachNetwork, ctx: &mut Context<Self>) {
        self.network = Some(msg.network);
        ctx.add_stream(msg.events);
        self.announce();
    }
}

impl Handler<MigrationAnswer> for Shard {
    type Result = ();

    fn handle(&mut self, msg: MigrationAnswer, _: &mut Context<Self>) {
        self.on_migration_answer(msg.peer, msg.sent, msg.unreadable, msg.result);
    }
}

impl Handler<PullAnswered> for Shard {
    type Result = ();

    fn handle(&mut self, msg: PullAnswered, _: &mut Context<Self>) {
        self.pull_answered(msg.peer, msg.sent, msg.unreadable);
    }
}

impl Handler<ArrivalSaved> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ArrivalSaved, _: &mut Context<Self>) {
        self.arrival_saved(msg.id, msg.result);
    }
}

impl Handler<PullAnswer> for Shard {
    type Result = ();

    fn handle(&mut self, msg: PullAnswer, _: &mut Context<Self>) {
        self.on_pull_answer(msg.peer, msg.result);
    }
}

impl Handler<RetryPull> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RetryPull, _: &mut Context<Self>) {
        if self.stopping.is_none() && self.connected.contains(&msg.0) {
            self.pull(msg.0);
        }
    }
}

impl Handler<GetMigrations> for Shard {
    type Result = MessageResult<GetMigrations>;

    fn handle(&mut self, _: GetMigrations, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.migrations.clone())
    }
}

impl Handler<GetPeers> for Shard {
    type Result = MessageResult<GetPeers>;

    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.peers_view())
    }
}
