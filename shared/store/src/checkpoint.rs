//! The sweep checkpoint: where the sweeps stand, one item shared by
//! every sweep.

use std::collections::BTreeSet;

use super::*;

/// Tries at saving the sweep checkpoint against concurrent sweeps.
const CHECKPOINT_TRIES: usize = 4;

/// Where the sweeps stand: the first hour not yet walked, and the hours
/// already walked that still hold keys a sweep could not remove (a failed
/// deletion, a malformed entry), which every sweep reads again until a
/// walk removes everything due in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepCheckpoint {
    pub next_bucket: Option<String>,
    pub retry: BTreeSet<String>,
    /// Bumped by every save (0: never saved).
    pub version: i64,
}

/// `update` of a checkpoint item, only over the version `read` (0: none
/// written yet): a concurrent save makes it write nothing.
pub(super) fn over_version(
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    read: i64,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    if read == 0 {
        update.condition_expression("attribute_not_exists(cp_version)")
    } else {
        update
            .condition_expression("cp_version = :read")
            .expression_attribute_values(":read", n(read))
    }
}

impl Store {
    /// Where the sweeps stand (nothing yet: the default, version 0).
    pub async fn sweep_checkpoint(&self) -> Result<SweepCheckpoint> {
        let Some(item) = self.get("sweeper".into(), "checkpoint".into()).await? else {
            return Ok(SweepCheckpoint::default());
        };
        let f = Fields(&item);
        let retry = match item.get("retry_buckets") {
            Some(AttributeValue::Ss(buckets)) => buckets.iter().cloned().collect(),
            Some(_) => return Err(StoreError::Corrupt(f.name(), "retry_buckets")),
            None => BTreeSet::new(),
        };
        Ok(SweepCheckpoint {
            next_bucket: f.opt_s("next_bucket")?.map(str::to_string),
            retry,
            version: f.opt_n("cp_version")?.unwrap_or(0),
        })
    }

    /// Saves `next` as the checkpoint read as `read`; if another sweep
    /// saved one meanwhile, saves both together (the later `next_bucket`,
    /// every bucket either keeps for retrying), so that nothing either
    /// left over is forgotten. Returns what was saved.
    pub async fn save_sweep_checkpoint(
        &self,
        read: &SweepCheckpoint,
        next: SweepCheckpoint,
    ) -> Result<SweepCheckpoint> {
        let mut read = read.clone();
        let mut next = next;
        for _ in 0..CHECKPOINT_TRIES {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_of("sweeper".into(), "checkpoint".into())))
                .expression_attribute_values(":v", n(read.version.saturating_add(1)));
            let mut sets = vec!["cp_version = :v"];
            if let Some(bucket) = &next.next_bucket {
                sets.push("next_bucket = :bucket");
                update = update.expression_attribute_values(":bucket", s(bucket));
            }
            let expression = if next.retry.is_empty() {
                format!("SET {} REMOVE retry_buckets", sets.join(", "))
            } else {
                sets.push("retry_buckets = :retry");
                update = update.expression_attribute_values(
                    ":retry",
                    AttributeValue::Ss(next.retry.iter().cloned().collect()),
                );
                format!("SET {}", sets.join(", "))
            };
            update = update.update_expression(expression);
            update = over_version(update, read.version);
            if self.conditional(update, Repeat::Idempotent).await? {
                next.version = read.version.saturating_add(1);
                return Ok(next);
            }
            read = self.sweep_checkpoint().await?;
            next = SweepCheckpoint {
                next_bucket: next.next_bucket.max(read.next_bucket.clone()),
                retry: next.retry.union(&read.retry).cloned().collect(),
                version: read.version,
            };
        }
        Err(StoreError::Transient {
            message: "the sweep checkpoint kept changing".into(),
            unknown_outcome: false,
        })
    }
}
