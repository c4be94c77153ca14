//! A simulated card processor, standing in for Stripe's API.
//!
//! It behaves like a real processor in the two ways that matter to the trace and to money:
//! it is slow (its latency, `PROCESSOR_LATENCY_MS`, is the bottleneck the waterfall shows as
//! `call_stripe_api`), and it is idempotent: a charge sent again with the same idempotency key
//! returns the first answer and is not charged again, like Stripe's `Idempotency-Key`.
//!
//! Test card tokens, after Stripe's: `tok_chargeDeclined` is declined,
//! `tok_chargeDeclinedInsufficientFunds` is declined for insufficient funds; with
//! `PROCESSOR_FAILURE_RATE` a fraction of other charges is declined at random (decided by the
//! idempotency key, so a retry gets the same answer).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use common::telemetry::{Failure, record_failure};
use tracing::field::Empty;

use crate::{
    config::ProcessorSettings,
    domain::{ChargeOutcome, DeclineReason, PaymentId},
};

/// How many idempotency keys the processor remembers; the oldest are forgotten first.
const REMEMBERED_KEYS: usize = 100_000;

pub(crate) struct Processor {
    settings: ProcessorSettings,
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    by_key: HashMap<PaymentId, ChargeOutcome>,
    oldest_first: VecDeque<PaymentId>,
}

impl Processor {
    pub(crate) fn new(settings: ProcessorSettings) -> Self {
        Processor {
            settings,
            answers: Mutex::default(),
        }
    }

    /// Charges `amount_minor` once per `idempotency_key`.
    #[tracing::instrument(
        name = "call_stripe_api",
        skip_all,
        fields(
            processor.name = "stripe (simulated)",
            processor.idempotency_key = %idempotency_key,
            processor.charge_id = Empty,
            payment.decline_reason = Empty,
        )
    )]
    pub(crate) async fn charge(
        &self,
        idempotency_key: PaymentId,
        amount_minor: i64,
        card_token: Option<&str>,
    ) -> ChargeOutcome {
        tokio::time::sleep(self.settings.latency).await;
        let outcome = {
            let mut answers = self
                .answers
                .lock()
                .expect("the processor's lock is never poisoned");
            if let Some(previous) = answers.by_key.get(&idempotency_key) {
                tracing::info!("idempotent replay: answering as before without charging");
                previous.clone()
            } else {
                let outcome = self.decide(idempotency_key, amount_minor, card_token);
                answers.remember(idempotency_key, outcome.clone());
                outcome
            }
        };
        let span = tracing::Span::current();
        match &outcome {
            ChargeOutcome::Succeeded { charge_id } => {
                span.record("processor.charge_id", charge_id.as_str());
            }
            ChargeOutcome::Declined(reason) => {
                span.record("payment.decline_reason", reason.as_str());
                // The processor said no: this is where the trace turns red.
                record_failure(
                    &span,
                    &Failure::exception(
                        reason.as_str(),
                        "processor decline",
                        format!("the processor declined the charge: {reason}"),
                    ),
                );
            }
        }
        outcome
    }

    fn decide(&self, key: PaymentId, amount_minor: i64, card_token: Option<&str>) -> ChargeOutcome {
        match card_token {
            Some("tok_chargeDeclined") => {
                return ChargeOutcome::Declined(DeclineReason::CardDeclined);
            }
            Some("tok_chargeDeclinedInsufficientFunds") => {
                return ChargeOutcome::Declined(DeclineReason::InsufficientFunds);
            }
            _ => {}
        }
        // The key's low 64 bits are random (a v4 or v7 UUID), so this is a fair coin per key
        // and the same answer for the same key.
        let low = key.0.as_u64_pair().1;
        let draw = low as f64 / u64::MAX as f64;
        if draw < self.settings.failure_rate {
            return ChargeOutcome::Declined(DeclineReason::ProcessorDeclined);
        }
        ChargeOutcome::Succeeded {
            charge_id: format!("ch_{}_{amount_minor}", key.0.simple()),
        }
    }
}

impl Answers {
    fn remember(&mut self, key: PaymentId, outcome: ChargeOutcome) {
        if self.oldest_first.len() == REMEMBERED_KEYS
            && let Some(oldest) = self.oldest_first.pop_front()
        {
            self.by_key.remove(&oldest);
        }
        self.by_key.insert(key, outcome);
        self.oldest_first.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    fn processor(failure_rate: f64) -> Processor {
        Processor::new(ProcessorSettings {
            latency: Duration::ZERO,
            failure_rate,
        })
    }

    #[tokio::test]
    async fn the_same_key_is_charged_once() {
        let p = processor(0.0);
        let key = PaymentId::generate();
        let first = p.charge(key, 4250, None).await;
        let second = p.charge(key, 4250, None).await;
        // The same charge id: one charge, answered twice.
        assert_eq!(first, second);
        assert!(matches!(first, ChargeOutcome::Succeeded { .. }));
        let other = p.charge(PaymentId::generate(), 4250, None).await;
        assert_ne!(first, other, "another key is another charge");
    }

    #[tokio::test]
    async fn test_tokens_are_declined() {
        let p = processor(0.0);
        assert_eq!(
            p.charge(PaymentId::generate(), 100, Some("tok_chargeDeclined"))
                .await,
            ChargeOutcome::Declined(DeclineReason::CardDeclined)
        );
        assert_eq!(
            p.charge(
                PaymentId::generate(),
                100,
                Some("tok_chargeDeclinedInsufficientFunds")
            )
            .await,
            ChargeOutcome::Declined(DeclineReason::InsufficientFunds)
        );
    }

    #[tokio::test]
    async fn a_failure_rate_of_one_declines_everything_and_zero_nothing() {
        let always = processor(1.0);
        let never = processor(0.0);
        for _ in 0..50 {
            assert_eq!(
                always.charge(PaymentId(Uuid::new_v4()), 100, None).await,
                ChargeOutcome::Declined(DeclineReason::ProcessorDeclined)
            );
            assert!(matches!(
                never.charge(PaymentId(Uuid::new_v4()), 100, None).await,
                ChargeOutcome::Succeeded { .. }
            ));
        }
    }
}
