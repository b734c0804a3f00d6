//! Runs ONNX backend node tests against oxrt and compares with the
//! reference outputs they ship.
//!
//! A case is a directory `test_<name>/` holding `model.onnx` and one or more
//! `test_data_set_<k>/` folders of `input_<i>.pb` / `output_<i>.pb`
//! (serialized `TensorProto`s). [`run_case`] loads the model through the
//! public `oxrt` API, feeds each data set and compares every output with
//! [`compare`]'s tolerances (those of the ONNX backend test runner).
//! [`expectations`] holds the known failures and the gate; [`report`] the
//! summaries; [`data`] the extraction of the pinned ONNX wheel.
//! [`strategies`], [`reference`] and [`build`] support the operator
//! property tests (`tests/properties.rs`).

pub mod build;
pub mod case;
pub mod check;
pub mod compare;
pub mod data;
pub mod expectations;
pub mod models;
pub mod reference;
pub mod report;
pub mod strategies;
pub mod value;

pub use case::{discover, run_case, run_case_with_timeout, CaseResult, NodeTestCase, Status};
pub use compare::{compare, Mismatch, Tolerance};
