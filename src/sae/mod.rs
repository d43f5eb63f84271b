//! Sparse autoencoders on a model's own activations: trained and applied here, with
//! hand-written gradients, so a site can see which learnt concepts drive a prediction, and
//! whether they sit inside the brain.
//!
//! A sparse autoencoder (SAE) rewrites an activation vector `x` (one spatial position of a
//! CNN feature map, or one ViT patch token) as a sparse, non-negative combination of learnt
//! directions, the *concepts*:
//!
//! ```text
//! x      = scale * activation                      normalised: mean ||x||^2 = 1 on the training set
//! z_pre  = W_enc (x - b_pre) + b_enc               n latents, n = expansion x d
//! z      = ReLU(TopK_k(z_pre))                     k active latents (TopK, the default)
//!        | ReLU(z_pre)                             or ReLU with an L1 penalty
//! x_hat  = W_dec^T z + b_pre                       decoder rows of unit norm
//! ```
//!
//! - [`SparseAutoencoder`]: the weights and what they were trained on ([`SaeHeader`]); encode,
//!   decode, save and load as safetensors with a JSON header.
//! - [`train`]: mini-batch Adam on the reconstruction error, an auxiliary loss that revives
//!   dead latents, decoder rows kept at unit norm; forward and backward written by hand.
//! - [`activations`]: the vectors of a tensor of a model over DICOM or PNG/JPEG inputs.
//! - [`fit`]: all of it for one model: activations, training, concepts, header.
//! - [`concepts`]: what each latent is for: its mean activation per predicted class, the
//!   share of its activation inside the brain mask, and its contribution to each class score.
//!
//! ## Example
//!
//! ```no_run
//! use dicom_xai::sae::SparseAutoencoder;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sae = SparseAutoencoder::load("vgg16.sae.safetensors".as_ref())?;
//! let vectors = ndarray::Array2::<f32>::zeros((10, sae.dimensions()));
//! let codes = sae.encode(sae.normalise(vectors).view());
//! println!("{} latents active in the first vector", codes.row(0).iter().filter(|v| **v > 0.0).count());
//! # Ok(())
//! # }
//! ```

pub mod activations;
pub mod concepts;
pub mod fit;
pub mod train;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use snafu::Snafu;

pub use concepts::Concept;

/// How latents are made sparse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Sparsity {
    /// The `k` largest pre-activations are kept (then ReLU), the rest are zero.
    TopK {
        /// Active latents per vector.
        k: usize,
    },
    /// ReLU, with `l1` times the sum of the latents added to the loss.
    Relu {
        /// The L1 coefficient.
        l1: f32,
    },
}

/// What an SAE was trained on, saved as the safetensors metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeHeader {
    /// The model's name (manifest `model.name`).
    pub model: String,
    /// SHA-256 of the model file, when known.
    pub model_sha256: Option<String>,
    /// The tensor whose vectors it encodes.
    pub tensor: String,
    /// The tensor's layout: "NCHW", "NHWC" or "tokens".
    pub layout: String,
    /// Vector dimensions.
    pub dimensions: usize,
    /// Latents.
    pub latents: usize,
    /// The sparsity.
    pub sparsity: Sparsity,
    /// Vectors are multiplied by this before encoding (unit mean squared norm on the
    /// training set).
    pub scale: f32,
    /// The model's labels, in order (the concepts' per-class figures follow it).
    pub labels: Vec<String>,
    /// Training figures (held-out r2, l0, dead fraction, vectors, seed, epochs...).
    pub training: serde_json::Value,
}

/// Why an SAE could not be used, trained, saved or loaded.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum SaeError {
    /// The file could not be read or written.
    #[snafu(display("{}: {source}", path.display()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an SAE of this program.
    #[snafu(display("{}: not a dicom-xai sparse autoencoder: {message}", path.display()))]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The settings or the data cannot train an SAE.
    #[snafu(display("{message}"))]
    Training {
        /// What is wrong.
        message: String,
    },
    /// The model failed while collecting activations or gradients.
    #[snafu(display("{message}"))]
    Model {
        /// What failed, naming the input.
        message: String,
    },
}

/// A sparse autoencoder: the weights, the header, and the concepts learnt.
#[derive(Debug, Clone)]
pub struct SparseAutoencoder {
    /// What it encodes and how it was trained.
    pub header: SaeHeader,
    /// Encoder weights, latents x dimensions.
    pub w_enc: Array2<f32>,
    /// Encoder bias, latents.
    pub b_enc: Array1<f32>,
    /// Decoder weights, latents x dimensions; rows of unit norm.
    pub w_dec: Array2<f32>,
    /// Pre-encoder (and decoder) bias, dimensions.
    pub b_pre: Array1<f32>,
    /// What each latent is for, when computed ([`concepts`]).
    pub concepts: Vec<Concept>,
}

impl SparseAutoencoder {
    /// Vector dimensions.
    pub fn dimensions(&self) -> usize {
        self.w_enc.ncols()
    }

    /// Latents.
    pub fn latents(&self) -> usize {
        self.w_enc.nrows()
    }

    /// Vectors as the SAE sees them: multiplied by the header's scale.
    pub fn normalise(&self, mut vectors: Array2<f32>) -> Array2<f32> {
        vectors.mapv_inplace(|v| v * self.header.scale);
        vectors
    }

    /// Pre-activations of normalised vectors, `[N, latents]`.
    pub fn pre_activations(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let centred = &x - &self.b_pre.view().insert_axis(Axis(0));
        let mut z = centred.dot(&self.w_enc.t());
        z += &self.b_enc.view().insert_axis(Axis(0));
        z
    }

    /// Latent codes of normalised vectors, `[N, latents]`, sparse and non-negative.
    pub fn encode(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut z = self.pre_activations(x);
        sparsify(&mut z, self.header.sparsity);
        z
    }

    /// Reconstructions (normalised) of codes, `[N, dimensions]`.
    pub fn decode(&self, z: ArrayView2<f32>) -> Array2<f32> {
        let mut x = z.dot(&self.w_dec);
        x += &self.b_pre.view().insert_axis(Axis(0));
        x
    }

    /// Writes the SAE as safetensors: tensors `w_enc`, `b_enc`, `w_dec`, `b_pre` (float32,
    /// little endian) and, when computed, the concept tables; the header as JSON in the
    /// metadata (`dicom_xai_sae`).
    pub fn save(&self, path: &Path) -> Result<(), SaeError> {
        let concepts = concepts::to_tensors(&self.concepts, self.header.labels.len());
        let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
            tensor_bytes("w_enc", &self.w_enc),
            tensor_bytes("b_enc", &self.b_enc.clone().insert_axis(Axis(0))),
            tensor_bytes("w_dec", &self.w_dec),
            tensor_bytes("b_pre", &self.b_pre.clone().insert_axis(Axis(0))),
        ];
        for (name, table) in &concepts {
            named.push(tensor_bytes(name, table));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = named
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| SaeError::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let header = serde_json::to_string(&self.header).map_err(|e| SaeError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), header)]);
        let bytes =
            safetensors::serialize(views, Some(metadata)).map_err(|e| SaeError::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        crate::files::write_atomically(path, &bytes).map_err(|source| SaeError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads an SAE written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<SparseAutoencoder, SaeError> {
        let bytes = std::fs::read(path).map_err(|source| SaeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |message: String| SaeError::Format {
            path: path.to_path_buf(),
            message,
        };
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
        let header_text = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| format(format!("no {METADATA_KEY:?} metadata")))?;
        let header: SaeHeader =
            serde_json::from_str(header_text).map_err(|e| format(format!("header: {e}")))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
        let matrix = |name: &str, rows: usize, columns: usize| -> Result<Array2<f32>, SaeError> {
            let view = tensors
                .tensor(name)
                .map_err(|e| format(format!("tensor {name}: {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != [rows, columns] {
                return Err(format(format!(
                    "tensor {name} is {:?} {:?}, expected F32 [{rows}, {columns}]",
                    view.dtype(),
                    view.shape()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Array2::from_shape_vec((rows, columns), values).map_err(|e| format(e.to_string()))
        };
        let (n, d) = (header.latents, header.dimensions);
        let w_enc = matrix("w_enc", n, d)?;
        let b_enc = matrix("b_enc", 1, n)?.row(0).to_owned();
        let w_dec = matrix("w_dec", n, d)?;
        let b_pre = matrix("b_pre", 1, d)?.row(0).to_owned();
        let classes = header.labels.len();
        let concepts = if tensors.names().contains(&concepts::TABLE) {
            concepts::from_table(&matrix(concepts::TABLE, n, concepts::columns(classes))?)
        } else {
            Vec::new()
        };
        Ok(SparseAutoencoder {
            header,
            w_enc,
            b_enc,
            w_dec,
            b_pre,
            concepts,
        })
    }
}

/// The metadata key of the header.
pub const METADATA_KEY: &str = "dicom_xai_sae";

fn tensor_bytes(name: &str, array: &Array2<f32>) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = array
        .as_standard_layout()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    (name.to_string(), array.shape().to_vec(), bytes)
}

/// Applies the sparsity to pre-activations in place: TopK keeps each row's `k` largest
/// (ties broken by index) and zeroes the rest; then ReLU.
pub fn sparsify(z: &mut Array2<f32>, sparsity: Sparsity) {
    match sparsity {
        Sparsity::Relu { .. } => z.mapv_inplace(|v| v.max(0.0)),
        Sparsity::TopK { k } => {
            let k = k.max(1);
            let mut scratch: Vec<f32> = Vec::with_capacity(z.ncols());
            for mut row in z.rows_mut() {
                if k < row.len() {
                    scratch.clear();
                    scratch.extend(row.iter().copied());
                    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                    let threshold = *kth;
                    let mut ties = k - row.iter().filter(|v| **v > threshold).count();
                    for v in row.iter_mut() {
                        if *v > threshold {
                            continue;
                        }
                        if *v == threshold && ties > 0 {
                            ties -= 1;
                        } else {
                            *v = 0.0;
                        }
                    }
                }
                row.mapv_inplace(|v| v.max(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keeps_exactly_k_largest_then_relu() {
        let mut z = ndarray::arr2(&[[0.5, -1.0, 3.0, 2.0, 2.0], [-1.0, -2.0, -3.0, -0.5, 0.1]]);
        sparsify(&mut z, Sparsity::TopK { k: 2 });
        assert_eq!(z.row(0).to_vec(), vec![0.0, 0.0, 3.0, 2.0, 0.0]);
        // the two largest of a mostly negative row: ReLU leaves one
        assert_eq!(z.row(1).to_vec(), vec![0.0, 0.0, 0.0, 0.0, 0.1]);
    }

    #[test]
    fn saved_and_loaded_saes_are_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.safetensors");
        let sae = train::initialise(
            6,
            12,
            Sparsity::TopK { k: 2 },
            &ndarray::Array2::<f32>::ones((4, 6)),
            7,
        );
        let mut sae = SparseAutoencoder {
            header: SaeHeader {
                model: "m".into(),
                model_sha256: None,
                tensor: "t".into(),
                layout: "NCHW".into(),
                dimensions: 6,
                latents: 12,
                sparsity: Sparsity::TopK { k: 2 },
                scale: 0.5,
                labels: vec!["a".into(), "b".into()],
                training: serde_json::json!({"r2": 0.5}),
            },
            ..sae
        };
        sae.concepts = (0..12)
            .map(|i| Concept {
                latent: i,
                mean_activation: vec![i as f32, 1.0],
                in_brain_share: Some(0.25),
                contribution: vec![0.1, -0.2],
                frequency: 0.5,
            })
            .collect();
        sae.save(&path).expect("save");
        let loaded = SparseAutoencoder::load(&path).expect("load");
        assert_eq!(loaded.header, sae.header);
        assert_eq!(loaded.w_enc, sae.w_enc);
        assert_eq!(loaded.w_dec, sae.w_dec);
        assert_eq!(loaded.b_pre, sae.b_pre);
        assert_eq!(loaded.concepts, sae.concepts);
        std::fs::write(&path, b"not safetensors").expect("write");
        let error = SparseAutoencoder::load(&path).expect_err("garbage");
        assert!(error.to_string().contains("x.safetensors"), "{error}");
    }
}
