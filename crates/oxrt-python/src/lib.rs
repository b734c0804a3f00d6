//! `oxrt._oxrt`: the native part of oxrt's Python package.
//!
//! It wraps [`oxrt::Session`] and converts values; the onnxruntime-style
//! classes (`InferenceSession`, `SessionOptions`, ...) are Python, in
//! `python/oxrt/__init__.py`, on top of this module.

mod convert;
mod errors;

use std::path::PathBuf;

use oxrt::core::Value;
use oxrt::{Dim, ExecutionMode, OptimizationLevel, Provider, ValueInfo, ValueType};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use errors::to_py;

/// A loaded, checked and planned model.
#[pyclass(frozen, module = "oxrt._oxrt")]
struct Session {
    inner: oxrt::Session,
}

/// One provider request: its name (or a library path) and its options.
type ProviderRequest = (String, Vec<(String, String)>);

/// `(name, type string, shape)` of a graph input or output; the shape holds
/// ints, symbolic names and `None` for unknown dims, or is `None` when the
/// rank is unknown.
type IoInfo = (String, String, Option<Vec<Option<DimItem>>>);

#[derive(IntoPyObject)]
enum DimItem {
    Size(usize),
    Name(String),
}

fn io_info(v: &ValueInfo) -> IoInfo {
    let shape = v.ty.dims().map(|dims| {
        dims.iter()
            .map(|d| match d {
                Dim::Known(n) => Some(DimItem::Size(*n)),
                Dim::Symbolic(s) => Some(DimItem::Name(s.clone())),
                Dim::Unknown => None,
            })
            .collect()
    });
    (v.name.clone(), type_string(&v.ty), shape)
}

/// onnxruntime's type strings: `tensor(float)`, `seq(tensor(int64))`, ...
fn type_string(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { dtype, .. } => format!("tensor({})", dtype.onnx_name()),
        ValueType::SparseTensor { dtype, .. } => format!("sparse_tensor({})", dtype.onnx_name()),
        ValueType::Sequence(t) => format!("seq({})", type_string(t)),
        ValueType::Optional(t) => format!("optional({})", type_string(t)),
        ValueType::Map { key, value } => format!("map({},{})", key.onnx_name(), type_string(value)),
        _ => "unknown".into(),
    }
}

#[pymethods]
impl Session {
    /// Loads `model` (a path, or the model's bytes) and plans it.
    #[new]
    #[pyo3(signature = (model, providers, optimization_level="all", intra_threads=0, inter_threads=0, parallel=false, profile_path=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        providers: Vec<ProviderRequest>,
        optimization_level: &str,
        intra_threads: usize,
        inter_threads: usize,
        parallel: bool,
        profile_path: Option<PathBuf>,
    ) -> PyResult<Self> {
        let level: OptimizationLevel = optimization_level.parse().map_err(PyValueError::new_err)?;
        let mut list = Vec::with_capacity(providers.len());
        for (name, options) in providers {
            list.push(
                name.parse::<Provider>()
                    .map_err(to_py)?
                    .with_options(options),
            );
        }
        let mut builder = oxrt::Session::builder()
            .with_providers(list)
            .with_provider_fallback(true)
            .with_optimization_level(level)
            .with_intra_threads(intra_threads)
            .with_inter_threads(inter_threads)
            .with_execution_mode(if parallel {
                ExecutionMode::Parallel
            } else {
                ExecutionMode::Sequential
            });
        if let Some(path) = profile_path {
            builder = builder.with_profiling(path);
        }
        let inner = if let Ok(bytes) = model.cast::<PyBytes>() {
            let bytes = bytes.as_bytes();
            py.detach(|| builder.commit_from_memory(bytes))
        } else {
            let path: PathBuf = model.extract().map_err(|_| {
                PyValueError::new_err("the model must be a path (str or os.PathLike) or bytes")
            })?;
            py.detach(|| builder.commit_from_file(path))
        }
        .map_err(to_py)?;
        Ok(Session { inner })
    }

    /// The graph inputs to feed.
    fn inputs(&self) -> Vec<IoInfo> {
        self.inner.inputs().iter().map(io_info).collect()
    }

    /// The graph outputs.
    fn outputs(&self) -> Vec<IoInfo> {
        self.inner.outputs().iter().map(io_info).collect()
    }

    /// Initializers that are also graph inputs (feeding one overrides it).
    fn overridable_initializers(&self) -> Vec<IoInfo> {
        let graph = &self.inner.model().graph;
        graph.overridable_initializers.iter().map(io_info).collect()
    }

    /// Provider names in priority order (CPU last).
    fn providers(&self) -> Vec<String> {
        self.inner
            .providers()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Model metadata: producer, graph, domain, description, version and
    /// the `metadata_props` pairs.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.model();
        let d = PyDict::new(py);
        d.set_item("producer_name", &m.producer_name)?;
        d.set_item("graph_name", &m.graph.name)?;
        d.set_item("domain", &m.domain)?;
        d.set_item("description", &m.doc_string)?;
        d.set_item("graph_description", &m.graph.doc_string)?;
        // onnxruntime reports a missing version as i64::MAX
        d.set_item("version", m.model_version.unwrap_or(i64::MAX))?;
        let custom = PyDict::new(py);
        for (k, v) in &m.metadata {
            custom.set_item(k, v)?;
        }
        d.set_item("custom_metadata_map", custom)?;
        Ok(d)
    }

    /// Runs the model on `(name, value)` pairs and returns every output as
    /// `(name, value)`. The GIL is released while the model runs.
    fn run<'py>(
        &self,
        py: Python<'py>,
        feed: Vec<(String, Bound<'py, PyAny>)>,
    ) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        let declared = self.inner.inputs();
        let mut inputs: Vec<(String, Value)> = Vec::with_capacity(feed.len());
        for (name, obj) in feed {
            let ty = declared
                .iter()
                .find(|i| i.name == name)
                .map_or(ValueType::Unknown, |i| i.ty.clone());
            let value = convert::value_from_py(&name, &obj, &ty)?;
            inputs.push((name, value));
        }
        let outputs = py.detach(|| self.inner.run(inputs)).map_err(to_py)?;
        outputs
            .into_iter()
            .map(|(name, v)| Ok((name, convert::value_to_py(py, v)?)))
            .collect()
    }

    /// Writes the profile of the runs so far (sessions created with a
    /// profile path) and returns the file's path.
    fn end_profiling(&self) -> PyResult<Option<PathBuf>> {
        Ok(self.inner.end_profiling().map_err(to_py)?.map(|(p, _)| p))
    }

    /// Saves the graph as optimized for this session.
    fn save_optimized_model(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save_optimized_model(path).map_err(to_py)
    }
}

/// `(name, device kind)` of the providers this build can create here.
#[pyfunction]
fn available_providers() -> Vec<(String, String)> {
    oxrt::available_providers()
        .into_iter()
        .map(|p| (p.name, format!("{:?}", p.device.kind)))
        .collect()
}

/// `(name, reason)` of providers compiled in that cannot run here.
#[pyfunction]
fn unavailable_providers() -> Vec<(String, String)> {
    oxrt::unavailable_providers()
}

#[pymodule]
fn _oxrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Session>()?;
    m.add_function(wrap_pyfunction!(available_providers, m)?)?;
    m.add_function(wrap_pyfunction!(unavailable_providers, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("OxrtError", py.get_type::<errors::OxrtError>())?;
    m.add("Fail", py.get_type::<errors::Fail>())?;
    m.add("InvalidArgument", py.get_type::<errors::InvalidArgument>())?;
    m.add("NoSuchFile", py.get_type::<errors::NoSuchFile>())?;
    m.add("InvalidProtobuf", py.get_type::<errors::InvalidProtobuf>())?;
    m.add("InvalidGraph", py.get_type::<errors::InvalidGraph>())?;
    m.add("NotImplemented", py.get_type::<errors::NotImplemented>())?;
    m.add("EPFail", py.get_type::<errors::EPFail>())?;
    Ok(())
}
