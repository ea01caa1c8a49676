//! Model preparation: rewrite a GGUF into the quantization the CPU engine runs fastest.
//!
//! candle (under mistral.rs) has AVX2 dot-product kernels for Q4_0, Q8_0 and the K-quants, but none
//! for Q4_1, Q5_0 or Q5_1, which then run a scalar loop several times slower. Preparation
//! dequantizes tensors of those types and requantizes them to Q8_0 (more precise than any of them,
//! so answers are essentially unchanged); every other tensor and all metadata are copied as they
//! are. The source file is never modified.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufReader, BufWriter},
    path::{Path, PathBuf},
};

use candle_core::{
    Device,
    quantized::{GgmlDType, QTensor, gguf_file},
};

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("model file {path} does not exist; run ./careloop.sh setup or name a local GGUF file")]
    Missing { path: PathBuf },
    #[error("{path} is not a readable GGUF file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("could not write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{output} must differ from the source file")]
    SameFile { output: PathBuf },
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareReport {
    pub source: PathBuf,
    pub output: PathBuf,
    /// `"Q4_1 -> Q8_0"` → number of tensors converted that way.
    pub converted: BTreeMap<String, usize>,
    /// Tensors copied unchanged.
    pub kept: usize,
    pub output_sha256: String,
}

/// Quantizations candle runs without a SIMD kernel on x86.
fn needs_requantizing(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Writes a copy of `source` at `output` with slow quantizations turned into Q8_0.
pub fn prepare(source: &Path, output: &Path) -> Result<PrepareReport, PrepareError> {
    if !source.exists() {
        return Err(PrepareError::Missing {
            path: source.to_path_buf(),
        });
    }
    if source.canonicalize().ok() == output.canonicalize().ok() && output.exists() {
        return Err(PrepareError::SameFile {
            output: output.to_path_buf(),
        });
    }
    let invalid = |reason: String| PrepareError::Invalid {
        path: source.to_path_buf(),
        reason,
    };
    let mut reader = BufReader::new(File::open(source).map_err(|e| invalid(e.to_string()))?);
    let content = gguf_file::Content::read(&mut reader).map_err(|e| invalid(e.to_string()))?;

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut converted: BTreeMap<String, usize> = BTreeMap::new();
    let mut kept = 0;
    for name in names {
        let tensor = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| invalid(e.to_string()))?;
        let dtype = tensor.dtype();
        let block = GgmlDType::Q8_0.block_size();
        let fits = tensor.shape().dims().last().is_some_and(|d| d % block == 0);
        if needs_requantizing(dtype) && fits {
            let dense = tensor
                .dequantize(&Device::Cpu)
                .map_err(|e| invalid(e.to_string()))?;
            let requantized =
                QTensor::quantize(&dense, GgmlDType::Q8_0).map_err(|e| invalid(e.to_string()))?;
            *converted.entry(format!("{dtype:?} -> Q8_0")).or_default() += 1;
            tensors.push((name.clone(), requantized));
        } else {
            kept += 1;
            tensors.push((name.clone(), tensor));
        }
    }

    let write_err = |reason: String| PrepareError::Write {
        path: output.to_path_buf(),
        reason,
    };
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| write_err(e.to_string()))?;
    }
    let partial = output.with_extension("gguf.partial");
    {
        let mut writer =
            BufWriter::new(File::create(&partial).map_err(|e| write_err(e.to_string()))?);
        // `general.file_type` 7 is "mostly Q8_0" in GGUF's numbering.
        let file_type = gguf_file::Value::U32(7);
        let mut metadata: Vec<(&str, &gguf_file::Value)> = content
            .metadata
            .iter()
            .map(|(k, v)| {
                if k == "general.file_type" && !converted.is_empty() {
                    (k.as_str(), &file_type)
                } else {
                    (k.as_str(), v)
                }
            })
            .collect();
        metadata.sort_by(|a, b| a.0.cmp(b.0));
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        gguf_file::write(&mut writer, &metadata, &refs).map_err(|e| write_err(e.to_string()))?;
        std::io::Write::flush(&mut writer).map_err(|e| write_err(e.to_string()))?;
    }
    std::fs::rename(&partial, output).map_err(|e| write_err(e.to_string()))?;
    let output_sha256 = crate::model_file_sha256(output).map_err(|e| write_err(e.to_string()))?;
    Ok(PrepareReport {
        source: source.to_path_buf(),
        output: output.to_path_buf(),
        converted,
        kept,
        output_sha256,
    })
}

/// What [`prepare_if_needed`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The output exists and was made from this very source file.
    UpToDate {
        output: PathBuf,
        output_sha256: String,
    },
    /// The output was (re)written.
    Written(PrepareReport),
}

/// The record written next to a prepared model: `<output>.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    source_sha256: String,
    output_sha256: String,
    converted: BTreeMap<String, usize>,
    kept: usize,
}

fn record_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Like [`prepare`], but does nothing when `output` and its record show it was made from the
/// current `source` and is intact (both checksums match).
pub fn prepare_if_needed(source: &Path, output: &Path) -> Result<Prepared, PrepareError> {
    if !source.exists() {
        return Err(PrepareError::Missing {
            path: source.to_path_buf(),
        });
    }
    let invalid = |reason: String| PrepareError::Invalid {
        path: source.to_path_buf(),
        reason,
    };
    let source_sha256 = crate::model_file_sha256(source).map_err(|e| invalid(e.to_string()))?;
    let record = std::fs::read(record_path(output))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok());
    if let Some(record) = record
        && record.source_sha256 == source_sha256
        && crate::model_file_sha256(output).ok().as_deref() == Some(record.output_sha256.as_str())
    {
        return Ok(Prepared::UpToDate {
            output: output.to_path_buf(),
            output_sha256: record.output_sha256,
        });
    }
    let report = prepare(source, output)?;
    let record = Record {
        source_sha256,
        output_sha256: report.output_sha256.clone(),
        converted: report.converted.clone(),
        kept: report.kept,
    };
    let write_err = |reason: String| PrepareError::Write {
        path: record_path(output),
        reason,
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| write_err(e.to_string()))?;
    std::fs::write(record_path(output), json).map_err(|e| write_err(e.to_string()))?;
    Ok(Prepared::Written(report))
}
