//! The labelled images an audit runs over (docs/design.md section 9): each data folder holds one
//! subfolder per label of images (.dcm, extensionless DICOM, .png, .jpg), or a `Testing/`
//! folder laid out so (the Kaggle layout, whose test split is then used).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snafu::Snafu;

/// Why a data folder cannot be audited.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum DatasetError {
    /// The folder cannot be listed.
    #[snafu(display("{}: cannot read the data folder: {source}", path.display()))]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A subfolder names no label of the models.
    #[snafu(display(
        "{}: the folder names no label of the models ({}); each subfolder of a data folder is one label",
        path.display(),
        labels.join(", ")
    ))]
    UnknownLabel {
        /// The subfolder.
        path: PathBuf,
        /// The labels the models know.
        labels: Vec<String>,
    },
    /// No image was found at all.
    #[snafu(display("no labelled image under {}", folders.join(", ")))]
    Empty {
        /// The data folders given.
        folders: Vec<String>,
    },
}

/// One image and its true label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelledImage {
    /// The label, spelled as the models spell it.
    pub label: String,
    /// The image file.
    pub path: PathBuf,
}

/// How a folder name is compared with labels: case, `_`, `-` and spaces ignored, so the
/// data set's `no_tumor` is the models' `notumor`.
fn canonical(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a file is taken as an image: .dcm, .png, .jpg, .jpeg, or no extension (DICOM
/// files often have none). Hidden files are not.
fn is_image(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    if hidden {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(extension) => matches!(
            extension.to_ascii_lowercase().as_str(),
            "dcm" | "png" | "jpg" | "jpeg"
        ),
    }
}

/// The label folders of `folder`: its `Testing/` folder's subfolders when it has one, else its
/// own, in name order.
fn label_folders(folder: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let testing = folder.join("Testing");
    let root = if testing.is_dir() {
        testing
    } else {
        folder.to_path_buf()
    };
    let unreadable = |source| DatasetError::Unreadable {
        path: root.clone(),
        source,
    };
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if path.is_dir() && !hidden {
            folders.push(path);
        }
    }
    folders.sort();
    Ok(folders)
}

/// The images under `folders`, at most `limit` per label (the first in path order), sorted
/// by label then path. `labels` are the models' labels.
pub fn discover(
    folders: &[PathBuf],
    labels: &[String],
    limit: Option<usize>,
) -> Result<Vec<LabelledImage>, DatasetError> {
    let by_canonical: BTreeMap<String, &String> =
        labels.iter().map(|l| (canonical(l), l)).collect();
    let mut by_label: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for folder in folders {
        for label_folder in label_folders(folder)? {
            let name = label_folder
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let label =
                by_canonical
                    .get(&canonical(name))
                    .ok_or_else(|| DatasetError::UnknownLabel {
                        path: label_folder.clone(),
                        labels: labels.to_vec(),
                    })?;
            let files = by_label.entry((*label).clone()).or_default();
            for entry in walkdir::WalkDir::new(&label_folder).sort_by_file_name() {
                let entry = entry.map_err(|e| DatasetError::Unreadable {
                    path: label_folder.clone(),
                    source: e.into(),
                })?;
                if entry.file_type().is_file() && is_image(entry.path()) {
                    files.push(entry.into_path());
                }
            }
        }
    }
    let mut images = Vec::new();
    for (label, mut paths) in by_label {
        paths.sort();
        paths.dedup();
        let keep = limit.unwrap_or(paths.len()).min(paths.len());
        images.extend(paths.into_iter().take(keep).map(|path| LabelledImage {
            label: label.clone(),
            path,
        }));
    }
    if images.is_empty() {
        return Err(DatasetError::Empty {
            folders: folders.iter().map(|f| f.display().to_string()).collect(),
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["glioma", "meningioma", "notumor", "pituitary"]
            .map(String::from)
            .to_vec()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folder");
        std::fs::write(path, b"x").expect("file");
    }

    #[test]
    fn the_kaggle_layout_uses_its_test_split_and_accepts_no_tumor() {
        let root = tempfile::tempdir().expect("temporary folder");
        touch(&root.path().join("Training/glioma/a.jpg"));
        touch(&root.path().join("Testing/glioma/b.jpg"));
        touch(&root.path().join("Testing/glioma/a.jpg"));
        touch(&root.path().join("Testing/no_tumor/c.png"));
        touch(&root.path().join("Testing/no_tumor/notes.txt"));
        touch(&root.path().join("Testing/no_tumor/.hidden.png"));
        let images = discover(&[root.path().to_path_buf()], &labels(), None).expect("images");
        let names: Vec<(String, String)> = images
            .iter()
            .map(|i| {
                let name = i.path.file_name().unwrap_or_default().to_string_lossy();
                (i.label.clone(), name.into_owned())
            })
            .collect();
        assert_eq!(
            names,
            [
                ("glioma", "a.jpg"),
                ("glioma", "b.jpg"),
                ("notumor", "c.png")
            ]
            .map(|(l, n)| (l.to_string(), n.to_string()))
        );
    }

    #[test]
    fn the_limit_is_per_label_and_an_unknown_folder_is_named() {
        let root = tempfile::tempdir().expect("temporary folder");
        for name in ["1.dcm", "2.dcm", "3.dcm"] {
            touch(&root.path().join("pituitary").join(name));
            touch(&root.path().join("glioma").join(name));
        }
        let images = discover(&[root.path().to_path_buf()], &labels(), Some(2)).expect("images");
        assert_eq!(images.len(), 4);
        touch(&root.path().join("astrocytoma/1.dcm"));
        let error =
            discover(&[root.path().to_path_buf()], &labels(), None).expect_err("an unknown label");
        assert!(error.to_string().contains("astrocytoma"), "{error}");
    }

    #[test]
    fn a_folder_without_images_is_an_error() {
        let root = tempfile::tempdir().expect("temporary folder");
        std::fs::create_dir_all(root.path().join("glioma")).expect("folder");
        assert!(matches!(
            discover(&[root.path().to_path_buf()], &labels(), None),
            Err(DatasetError::Empty { .. })
        ));
    }
}
