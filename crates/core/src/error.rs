//! Errors the core reports instead of panicking.

use thiserror::Error;

use crate::WorkloadId;

/// An event the core could not apply. The state is unchanged when one is returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The fleet handed to the core is inconsistent.
    #[error("fleet: {0}")]
    Fleet(String),
    /// An event names a workload the core does not know.
    #[error("unknown workload {0}")]
    UnknownWorkload(WorkloadId),
    /// An event names a node the core does not know.
    #[error("unknown node `{0}`")]
    UnknownNode(String),
    /// An event names a site the core does not know.
    #[error("unknown site `{0}`; known sites: {1}")]
    UnknownSite(String, String),
    /// A workload put back from the event log ([`crate::Scheduler::restore`]) does not
    /// fit the fleet as the log says it did: the log and the fleet file disagree.
    #[error("cannot restore {0}: {1}")]
    Restore(WorkloadId, String),
    /// A workload put back from the event log ran on a site that the residency rules in
    /// force no longer let hold its data (the fleet file changed: a certification lost, a
    /// rule narrowed). It must not keep running there.
    #[error("cannot restore {workload} on node `{node}`: {why}")]
    Residency {
        /// The workload.
        workload: WorkloadId,
        /// The node the log placed it on.
        node: String,
        /// The node's site.
        site: String,
        /// The rule and the term the site breaks.
        why: String,
    },
    /// An internal consistency check failed; the operation was refused whole. Seeing
    /// this is a bug in gigawatt, never a user error.
    #[error("internal invariant violated: {0}")]
    Invariant(&'static str),
}
