//! Operator families of the CPU provider, one module each. Every module
//! registers its own kernels; [`register_all`] lists the families.

pub mod activation;
pub mod attention;
pub mod cast;
pub mod compare;
pub mod constant;
pub mod control;
pub mod conv;
pub mod conv_transpose;
pub mod cumulative;
pub mod detection;
pub mod einsum;
pub mod elementwise;
pub mod gather;
pub mod generate;
pub mod grid;
pub mod lane_norm;
pub mod layout;
pub mod linalg;
pub mod loss;
pub mod matmul;
pub mod normalization;
pub mod pad;
pub mod pool;
pub mod quantize;
pub mod rearrange;
pub mod recurrent;
pub mod reduce;
pub mod resize;
pub mod rotary;
pub mod scatter;
pub mod select;
pub mod sequence;
pub mod signal;
pub mod slice;
pub mod softmax;
pub mod strings;
pub mod topk;
pub mod unary;
pub mod unique;
pub mod window;

use oxrt_core::KernelRegistry;

/// Registers every operator family.
pub fn register_all(reg: &mut KernelRegistry) {
    activation::register(reg);
    attention::register(reg);
    cast::register(reg);
    compare::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    conv_transpose::register(reg);
    cumulative::register(reg);
    detection::register(reg);
    einsum::register(reg);
    elementwise::register(reg);
    gather::register(reg);
    generate::register(reg);
    grid::register(reg);
    lane_norm::register(reg);
    layout::register(reg);
    linalg::register(reg);
    loss::register(reg);
    matmul::register(reg);
    normalization::register(reg);
    pad::register(reg);
    pool::register(reg);
    quantize::register(reg);
    rearrange::register(reg);
    resize::register(reg);
    recurrent::register(reg);
    reduce::register(reg);
    rotary::register(reg);
    scatter::register(reg);
    select::register(reg);
    sequence::register(reg);
    signal::register(reg);
    slice::register(reg);
    softmax::register(reg);
    strings::register(reg);
    topk::register(reg);
    unary::register(reg);
    unique::register(reg);
}
