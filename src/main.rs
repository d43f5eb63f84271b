//! The `dicom-xai` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    dicom_xai::cli::main()
}
