//! Live request taps: "tcpdump for microservices".
//!
//! A proxy keeps its open taps in [`Taps`]. Each HTTP stack of a connection is wrapped in a
//! [`TapLayer`], which for every request:
//!
//! 1. loads the number of open taps, one relaxed atomic load, and with none open does
//!    nothing more: no allocation, no lock;
//! 2. otherwise evaluates each tap's [`Match`] over what is known of the request (its
//!    addresses, method, authority, path, the workloads' labels). Facts known only later,
//!    the profile route and an outbound destination's labels, make a filter
//!    [`Truth::Unknown`]; such taps decide when the response starts (see [`filter`]);
//! 3. for each tap that matches, takes the request if the tap's limits allow: at most
//!    `limit` requests in all, and `max_rps` a second by a token bucket. A tap that has
//!    taken its limit leaves the registry, and its stream ends once its last request does;
//! 4. sends a request-init event, then a response-init when the response's headers come,
//!    then a response-end with the body's size, the gRPC status from the trailers, or the
//!    error that cut it short.
//!
//! Events go through a bounded channel per tap with `try_send`: a reader that falls
//! behind loses events, and never slows traffic. Once one of a request's events is lost,
//! its later ones are not sent, so a reader never sees a response without its request.
//!
//! [`TapServer`] is the proxy's `Tap` gRPC service (`proto/tap.proto`); it answers only the
//! identity it is given (the controller's), read from a [`ClientIdentity`] request
//! extension that the TLS server sets.

#![forbid(unsafe_code)]

pub mod filter;
mod grpc;
mod layer;
mod registry;

pub use filter::{Facts, InvalidMatch, Labels, Match, Truth};
pub use grpc::{authorize, ClientIdentity, EventStream, TapServer};
pub use layer::{
    DestinationLabels, EndpointAddr, Peers, ResponseFuture, TapBody, TapLayer, TapService,
};
pub use registry::{Subscription, Taps, EVENT_BUFFER, MAX_LIMIT, MAX_RPS};
