//! Decode one DICOM slice the way the pipeline does and save what the models see.
//!
//! ```text
//! cargo run --release --example decode_slice -- IM0001.dcm slice.png [FRAME]
//! ```
//!
//! The PNG holds the frame after the Modality LUT and the VOI transform (window, VOI LUT or
//! min/max), MONOCHROME1 inverted: the [0, 1] grey levels scaled to 8 bits.

use std::path::PathBuf;

use dicom_xai::dicom::{file, pixels, voi};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: decode_slice INPUT.dcm OUTPUT.png [FRAME]");
        std::process::exit(2);
    };
    let frame: usize = match args.next() {
        Some(f) => f.to_string_lossy().parse()?,
        None => 0,
    };
    let slice = file::open(&PathBuf::from(input), file::Depth::Full)?;
    let frames = pixels::decode(&slice)?;
    if frame >= frames.frame_count() {
        return Err(format!(
            "frame {frame} requested, the file has {}",
            frames.frame_count()
        )
        .into());
    }
    let grey = voi::unit_grey(&slice, &frames, frame)?;
    let (rows, columns) = grey.dim();
    let bytes: Vec<u8> = grey.iter().map(|v| (v * 255.0).round() as u8).collect();
    let picture = image::GrayImage::from_raw(columns as u32, rows as u32, bytes)
        .ok_or("the grey levels do not fill the picture")?;
    picture.save(&output)?;
    println!(
        "{} frame {frame}: {rows} x {columns}, {:?}, saved to {}",
        slice.path.display(),
        frames.photometric,
        PathBuf::from(output).display()
    );
    Ok(())
}
