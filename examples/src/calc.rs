//! The `Calc` service of `calc-server`, `calc-client` and `cluster-demo`: each answer says which instance
//! computed it, so that a client can see how calls were spread.

use rpc_core::service;
use serde::{Deserialize, Serialize};

/// A result, and the instance that computed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The result.
    pub value: i64,
    /// The address of the instance that computed it.
    pub instance: String,
}

/// Why [`Calc::div`] refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalcError {
    /// The divisor was zero.
    DivisionByZero,
}

/// Arithmetic over RPC. Both methods are safe to run twice, so a balanced client retries them on another
/// instance after `Unavailable`.
#[service]
pub trait Calc {
    /// `a + b`.
    #[idempotent]
    async fn add(&self, a: i64, b: i64) -> Answer;
    /// `a / b`, or why not.
    #[idempotent]
    async fn div(&self, a: i64, b: i64) -> Result<Answer, CalcError>;
}

/// An instance of the service.
#[derive(Clone, Debug)]
pub struct Calculator {
    /// Its own address, reported in each answer.
    pub instance: String,
}

impl Calc for Calculator {
    async fn add(&self, a: i64, b: i64) -> Answer {
        Answer {
            value: a.wrapping_add(b),
            instance: self.instance.clone(),
        }
    }

    async fn div(&self, a: i64, b: i64) -> Result<Answer, CalcError> {
        let value = a.checked_div(b).ok_or(CalcError::DivisionByZero)?;
        Ok(Answer {
            value,
            instance: self.instance.clone(),
        })
    }
}
