//! Transforms that are a plain function of the batch (most are): the
//! trait they implement, and the one tower `Service` that runs them.

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower::util::BoxService;
use tower::Service;

use super::{BoxError, Transform};
use crate::event::EventBatch;

/// A transform that is a plain function of the batch: most are.
pub trait FunctionTransform: Send + 'static {
    /// Changes the batch in place.
    fn transform(&mut self, batch: &mut EventBatch);
}

/// Makes a [`Transform`] service of a [`FunctionTransform`].
pub fn function_transform(transform: impl FunctionTransform) -> Transform {
    BoxService::new(FunctionService(transform))
}

struct FunctionService<T>(T);

impl<T: FunctionTransform> Service<EventBatch> for FunctionService<T> {
    type Response = EventBatch;
    type Error = BoxError;
    type Future = Ready<Result<EventBatch, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut batch: EventBatch) -> Self::Future {
        self.0.transform(&mut batch);
        ready(Ok(batch))
    }
}
