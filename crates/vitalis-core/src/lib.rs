//! Domain types of Vitalis. Nothing here touches the network or a database, so every
//! rule (id formats, scope grammar, user validation, page tokens) is unit-tested in isolation.

pub mod ids;
pub mod page;
pub mod scope;
pub mod timefmt;
pub mod user;
pub mod validation;

pub use validation::{FieldError, ValidationErrors};
