//! numpy arrays (and lists, dicts, `None`) to oxrt values and back.
//!
//! Inputs are copied once into the tensor the session owns (kernels may
//! reuse a fed buffer in place). Outputs are handed to numpy without a
//! copy: the array takes ownership of the tensor's buffer.
//!
//! Element types numpy has no dtype for cross as tagged tuples that the
//! Python layer builds and reads (`python/oxrt/_values.py`):
//! `("strings", shape, [str, ...])` and `("raw", onnx_type, shape,
//! ndarray)` with the raw bit patterns (`uint16` for bfloat16, `uint8`
//! per element for the 8-, 4- and 2-bit formats).

use numpy::{
    dtype, Complex32, Complex64, Element as NpElement, PyArray1, PyArrayDescrMethods, PyArrayDyn,
    PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use oxrt::core::{Map, Sequence, Value};
use oxrt::{DataType, Storage, Tensor, ValueType};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::errors::{to_py, InvalidArgument};

/// Converts a fed Python object to the value the input `name` declares.
pub fn value_from_py(name: &str, obj: &Bound<'_, PyAny>, declared: &ValueType) -> PyResult<Value> {
    match declared {
        ValueType::Optional(inner) => {
            if obj.is_none() {
                Ok(Value::Optional(None))
            } else {
                let v = value_from_py(name, obj, inner)?;
                Ok(Value::Optional(Some(Box::new(v))))
            }
        }
        ValueType::Sequence(elem) => {
            let list = obj.cast::<PyList>().map_err(|_| {
                InvalidArgument::new_err(format!(
                    "input '{name}': expected {declared} (a list of arrays), got {}",
                    type_name(obj)
                ))
            })?;
            let items = list
                .iter()
                .map(|item| tensor_from_py(name, &item))
                .collect::<PyResult<Vec<_>>>()?;
            let dtype = elem
                .dtype()
                .or_else(|| items.first().map(Tensor::dtype))
                .ok_or_else(|| {
                    InvalidArgument::new_err(format!(
                        "input '{name}': the element type of an empty sequence is unknown"
                    ))
                })?;
            Ok(Value::Sequence(Sequence::new(dtype, items).map_err(to_py)?))
        }
        ValueType::Map { key, value } => {
            let dict = obj.cast::<PyDict>().map_err(|_| {
                InvalidArgument::new_err(format!(
                    "input '{name}': expected {declared} (a dict), got {}",
                    type_name(obj)
                ))
            })?;
            let keys: Vec<Bound<'_, PyAny>> = dict.keys().iter().collect();
            let key_tensor = match key {
                DataType::String => Tensor::from_strings(
                    vec![keys.len()],
                    keys.iter().map(|k| k.extract()).collect::<PyResult<_>>()?,
                ),
                DataType::I32 => Tensor::from_vec(
                    vec![keys.len()],
                    keys.iter()
                        .map(|k| k.extract::<i32>())
                        .collect::<PyResult<Vec<_>>>()?,
                ),
                _ => Tensor::from_vec(
                    vec![keys.len()],
                    keys.iter()
                        .map(|k| k.extract::<i64>())
                        .collect::<PyResult<Vec<_>>>()?,
                ),
            }
            .map_err(to_py)?;
            let values = dict
                .values()
                .iter()
                .map(|v| value_from_py(name, &v, value))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(Value::Map(Map::new(key_tensor, values).map_err(to_py)?))
        }
        _ => tensor_from_py(name, obj).map(Value::Tensor),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".into())
}

/// A tensor from a numpy array or a tagged tuple (`strings` / `raw`).
fn tensor_from_py(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    if let Ok(t) = obj.cast::<PyTuple>() {
        return tagged_tensor(name, t);
    }
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "input '{name}': expected a numpy array, got {}",
            type_name(obj)
        ))
    })?;
    let shape = arr.shape().to_vec();
    let py = obj.py();
    let dt = arr.dtype();
    macro_rules! numeric {
        ($($t:ty),*) => {
            $(
                if dt.is_equiv_to(&dtype::<$t>(py)) {
                    let data = elements::<$t>(obj)?;
                    return Tensor::from_vec(shape, data).map_err(to_py);
                }
            )*
        };
    }
    numeric!(
        f32,
        f64,
        oxrt::f16,
        i8,
        i16,
        i32,
        i64,
        u8,
        u16,
        u32,
        u64,
        bool
    );
    if dt.is_equiv_to(&dtype::<Complex32>(py)) {
        let data = elements::<Complex32>(obj)?;
        let pairs = data.into_iter().map(|c| [c.re, c.im]).collect();
        return Tensor::from_storage(DataType::Complex64, shape, Storage::Complex64(pairs))
            .map_err(to_py);
    }
    if dt.is_equiv_to(&dtype::<Complex64>(py)) {
        let data = elements::<Complex64>(obj)?;
        let pairs = data.into_iter().map(|c| [c.re, c.im]).collect();
        return Tensor::from_storage(DataType::Complex128, shape, Storage::Complex128(pairs))
            .map_err(to_py);
    }
    Err(InvalidArgument::new_err(format!(
        "input '{name}': numpy dtype {} has no ONNX element type",
        dt.str().map(|s| s.to_string()).unwrap_or_default()
    )))
}

/// The elements of a numpy array of `T` in row-major order (one copy).
fn elements<T: NpElement + Copy>(obj: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    let arr = obj.cast::<PyArrayDyn<T>>()?;
    let ro = arr.try_readonly()?;
    Ok(match ro.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => ro.as_array().iter().copied().collect(),
    })
}

/// `("strings", shape, list)` or `("raw", onnx_type, shape, ndarray)`.
fn tagged_tensor(name: &str, t: &Bound<'_, PyTuple>) -> PyResult<Tensor> {
    let tag: String = t.get_item(0)?.extract()?;
    match tag.as_str() {
        "strings" => {
            let shape: Vec<usize> = t.get_item(1)?.extract()?;
            let data: Vec<String> = t.get_item(2)?.extract()?;
            Tensor::from_strings(shape, data).map_err(to_py)
        }
        "raw" => {
            let type_name: String = t.get_item(1)?.extract()?;
            let dtype = DataType::ALL
                .into_iter()
                .find(|d| d.onnx_name() == type_name)
                .ok_or_else(|| {
                    InvalidArgument::new_err(format!(
                        "input '{name}': unknown ONNX element type '{type_name}'"
                    ))
                })?;
            let shape: Vec<usize> = t.get_item(2)?.extract()?;
            let data = t.get_item(3)?;
            if dtype == DataType::BF16 {
                let bits = elements::<u16>(&data)?;
                let v = bits.into_iter().map(oxrt::bf16::from_bits).collect();
                return Tensor::from_vec(shape, v).map_err(to_py);
            }
            let mut bytes = elements::<u8>(&data)?;
            widen_sub_byte(dtype, &mut bytes);
            Tensor::from_storage(dtype, shape, Storage::Bits(bytes)).map_err(to_py)
        }
        other => Err(PyTypeError::new_err(format!(
            "input '{name}': unknown value tag '{other}'"
        ))),
    }
}

/// Element types narrower than a byte: oxrt keeps signed ones (int4, int2)
/// sign-extended into their byte; numpy (ml_dtypes) keeps the low bits only.
fn sub_byte(dtype: DataType) -> Option<(u8, bool)> {
    let bits = dtype.bits();
    (bits < 8 && bits > 0).then(|| {
        let signed = matches!(dtype, DataType::I4 | DataType::I2);
        (((1u16 << bits) - 1) as u8, signed)
    })
}

/// ml_dtypes' low bits to oxrt's byte per element.
fn widen_sub_byte(dtype: DataType, bytes: &mut [u8]) {
    if let Some((mask, signed)) = sub_byte(dtype) {
        let sign = (mask >> 1) + 1;
        for b in bytes {
            *b &= mask;
            if signed && *b & sign != 0 {
                *b |= !mask;
            }
        }
    }
}

/// oxrt's byte per element to the low bits ml_dtypes reads.
fn narrow_sub_byte(dtype: DataType, bytes: &mut [u8]) {
    if let Some((mask, _)) = sub_byte(dtype) {
        for b in bytes {
            *b &= mask;
        }
    }
}

/// Hands a vector to numpy without a copy, shaped `shape`.
fn array<'py, T: NpElement>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, data).reshape(shape)?.into_any())
}

/// A Python object for an output value: an ndarray, a list (sequence), a
/// dict (map), `None` (absent optional) or a tagged tuple.
pub fn value_to_py(py: Python<'_>, v: Value) -> PyResult<Bound<'_, PyAny>> {
    match v {
        Value::Tensor(t) => tensor_to_py(py, t),
        Value::Sequence(s) => {
            let items = s
                .items
                .into_iter()
                .map(|t| tensor_to_py(py, t))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any())
        }
        Value::Map(m) => {
            let dict = PyDict::new(py);
            let keys = tensor_to_py(py, m.keys)?;
            let keys = keys.call_method0("tolist")?;
            for (k, v) in keys.try_iter()?.zip(m.values) {
                dict.set_item(k?, value_to_py(py, v)?)?;
            }
            Ok(dict.into_any())
        }
        Value::Optional(None) => Ok(py.None().into_bound(py)),
        Value::Optional(Some(v)) => value_to_py(py, *v),
    }
}

fn tensor_to_py<'py>(py: Python<'py>, t: Tensor) -> PyResult<Bound<'py, PyAny>> {
    let dtype = t.dtype();
    let shape = t.shape().to_vec();
    let raw = |data: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyAny>> {
        let tuple = (
            "raw",
            PyString::new(py, dtype.onnx_name()),
            shape.clone(),
            data,
        );
        Ok(tuple.into_pyobject(py)?.into_any())
    };
    match t.into_storage() {
        Storage::F32(v) => array(py, v, &shape),
        Storage::F64(v) => array(py, v, &shape),
        Storage::F16(v) => array(py, v, &shape),
        Storage::I8(v) => array(py, v, &shape),
        Storage::I16(v) => array(py, v, &shape),
        Storage::I32(v) => array(py, v, &shape),
        Storage::I64(v) => array(py, v, &shape),
        Storage::U8(v) => array(py, v, &shape),
        Storage::U16(v) => array(py, v, &shape),
        Storage::U32(v) => array(py, v, &shape),
        Storage::U64(v) => array(py, v, &shape),
        Storage::Bool(v) => array(py, v, &shape),
        Storage::Complex64(v) => {
            let v: Vec<Complex32> = v
                .into_iter()
                .map(|[re, im]| Complex32::new(re, im))
                .collect();
            array(py, v, &shape)
        }
        Storage::Complex128(v) => {
            let v: Vec<Complex64> = v
                .into_iter()
                .map(|[re, im]| Complex64::new(re, im))
                .collect();
            array(py, v, &shape)
        }
        Storage::String(v) => {
            let tuple = ("strings", shape.clone(), v);
            Ok(tuple.into_pyobject(py)?.into_any())
        }
        Storage::BF16(v) => {
            let bits: Vec<u16> = v.into_iter().map(|b| b.to_bits()).collect();
            raw(array(py, bits, &shape)?)
        }
        Storage::Bits(mut v) => {
            narrow_sub_byte(dtype, &mut v);
            raw(array(py, v, &shape)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_elements_widen_and_narrow_between_conventions() {
        // ml_dtypes int4: -8 is 0x08, -1 is 0x0F; oxrt: 0xF8, 0xFF
        let mut b = vec![0x08, 0x0F, 0x07, 0x03];
        widen_sub_byte(DataType::I4, &mut b);
        assert_eq!(b, [0xF8, 0xFF, 0x07, 0x03]);
        narrow_sub_byte(DataType::I4, &mut b);
        assert_eq!(b, [0x08, 0x0F, 0x07, 0x03]);
        let mut b = vec![0x02, 0x03, 0x01];
        widen_sub_byte(DataType::I2, &mut b);
        assert_eq!(b, [0xFE, 0xFF, 0x01]);
        let mut u = vec![0x0F, 0xF3];
        widen_sub_byte(DataType::U4, &mut u);
        assert_eq!(u, [0x0F, 0x03]);
        let mut f8 = vec![0xF8];
        widen_sub_byte(DataType::F8E4M3FN, &mut f8);
        assert_eq!(f8, [0xF8]);
    }
}
