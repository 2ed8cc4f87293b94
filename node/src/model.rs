//! The node's records: deployments, runs and usage, as stored and as
//! served. They are the node API's wire types, defined in `delta-node-api`
//! so that the control plane shares them without linking the node.

pub use delta_node_api::*;
