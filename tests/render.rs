//! The overlay renderer: canvas geometry, blending, colour maps, the legend band (drawn,
//! never clipped), errors, determinism and PNG output. Needs DejaVu Sans (Debian package
//! `fonts-dejavu-core`) or a font named by DICOM_XAI_FONT.
//!
//! `cargo test --release --test render -- --ignored` regenerates `docs/overlay-example.png`.

use std::path::{Path, PathBuf};

use ab_glyph::{Font as _, PxScale, ScaleFont};
use dicom_xai::dicom::secondary_capture::RgbImage;
use dicom_xai::render::legend::{self, BACKGROUND, BandLayout, UNTRAINED_WARNING, WARNING};
use dicom_xai::render::{
    COLOUR_MAPS, ColourMap, Font, Legend, MIN_WIDTH, RenderError, Style, render_overlay, save_png,
    upscale_factor,
};
use ndarray::Array2;

fn font() -> Font {
    Font::find(None).unwrap_or_else(|e| panic!("the renderer tests need a font: {e}"))
}

fn legend(trained: bool) -> Legend {
    Legend {
        model_name: "densenet169-brain".into(),
        model_version: "3".into(),
        trained,
        method: "gradcam".into(),
        class_label: "glioma".into(),
        probability: 0.973,
        notes: vec!["62% of the evidence lies outside the brain".into()],
    }
}

fn style(map: &str, opacity: f32) -> Style {
    Style {
        colour_map: ColourMap::by_name(map).expect("known colour map"),
        opacity,
    }
}

/// A smooth grey ramp with some structure, values in [0, 1].
fn grey(rows: usize, columns: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, columns), |(r, c)| {
        let base = (r + 2 * c) as f32 / (rows + 2 * columns) as f32;
        (0.1 + 0.8 * base + 0.05 * ((r * 7 + c * 3) % 5) as f32 / 4.0).clamp(0.0, 1.0)
    })
}

fn pixel(image: &RgbImage, row: u32, column: u32) -> [u8; 3] {
    let i = ((row * image.columns + column) * 3) as usize;
    [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
}

fn level(g: f32) -> u8 {
    (g.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The rows of `image` from `top` down, as their own image.
fn rows_from(image: &RgbImage, top: u32) -> Vec<u8> {
    image.pixels[(top * image.columns * 3) as usize..].to_vec()
}

#[test]
fn small_slices_are_upscaled_by_an_integer_factor_above_the_band() {
    let font = font();
    for (rows, columns) in [(64, 64), (100, 80), (512, 512), (256, 192), (192, 256)] {
        let g = grey(rows, columns);
        let mut heat = Array2::zeros((rows, columns));
        heat[[rows / 2, columns / 2]] = 1.0;
        let legend = legend(true);
        let image = render_overlay(
            g.view(),
            heat.view(),
            &style("inferno", 0.6),
            &legend,
            &font,
        )
        .expect("renders");
        assert!(
            image.columns >= MIN_WIDTH,
            "{rows}x{columns}: {}",
            image.columns
        );
        assert_eq!(image.columns % columns as u32, 0, "{rows}x{columns}");
        let k = image.columns / columns as u32;
        assert_eq!(k, upscale_factor(columns));
        // the smallest such factor
        assert!(k == 1 || (k - 1) * (columns as u32) < MIN_WIDTH);
        let band = legend::layout(&legend, true, image.columns, &font).expect("layout");
        assert_eq!(
            image.rows,
            rows as u32 * k + band.height,
            "{rows}x{columns}"
        );
        assert_eq!(
            image.pixels.len(),
            (image.rows * image.columns * 3) as usize
        );
    }
    assert_eq!(upscale_factor(64), 8);
    assert_eq!(upscale_factor(192), 3);
    assert_eq!(upscale_factor(512), 1);
    assert_eq!(upscale_factor(1024), 1);
}

#[test]
fn opacity_zero_shows_exactly_the_upscaled_grey() {
    let font = font();
    let (rows, columns) = (64, 64);
    let g = grey(rows, columns);
    let heat = Array2::from_shape_fn((rows, columns), |(r, c)| (r * c) as f32);
    let image = render_overlay(
        g.view(),
        heat.view(),
        &style("turbo", 0.0),
        &legend(true),
        &font,
    )
    .expect("renders");
    let k = image.columns / columns as u32;
    for y in 0..rows as u32 * k {
        for x in 0..image.columns {
            let expected = level(g[[(y / k) as usize, (x / k) as usize]]);
            assert_eq!(pixel(&image, y, x), [expected; 3], "row {y}, column {x}");
        }
    }
}

#[test]
fn heat_in_one_quadrant_colours_only_that_quadrant() {
    let font = font();
    let (rows, columns) = (64, 64);
    let g = grey(rows, columns);
    // a blob in the top-left quadrant, zero elsewhere
    let heat = Array2::from_shape_fn((rows, columns), |(r, c)| {
        let d2 = (r as f32 - 16.0).powi(2) + (c as f32 - 16.0).powi(2);
        if r < 32 && c < 32 {
            (-d2 / 60.0).exp()
        } else {
            0.0
        }
    });
    let image = render_overlay(
        g.view(),
        heat.view(),
        &style("inferno", 0.6),
        &legend(true),
        &font,
    )
    .expect("renders");
    let k = image.columns / columns as u32;
    let mut coloured = 0;
    for y in 0..rows as u32 * k {
        for x in 0..image.columns {
            let [r, gr, b] = pixel(&image, y, x);
            let in_quadrant = y < 32 * k && x < 32 * k;
            if !in_quadrant {
                assert!(r == gr && gr == b, "colour outside the quadrant at {y},{x}");
                assert_eq!(r, level(g[[(y / k) as usize, (x / k) as usize]]));
            } else if !(r == gr && gr == b) {
                coloured += 1;
            }
        }
    }
    assert!(
        coloured > (16 * 16) as usize,
        "only {coloured} coloured pixels"
    );
    // the peak is blended with the map's top colour at alpha 0.6
    let peak = pixel(&image, 16 * k, 16 * k);
    let top = ColourMap::by_name("inferno").expect("inferno").rgb(1.0);
    let grey_level = f32::from(level(g[[16, 16]]));
    for channel in 0..3 {
        let expected = (grey_level * 0.4 + f32::from(top[channel]) * 0.6).round() as u8;
        assert_eq!(peak[channel], expected, "channel {channel}");
    }
}

#[test]
fn colour_map_endpoints_match_the_published_values() {
    let hex = |v: u32| [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    let inferno = ColourMap::by_name("inferno").expect("inferno");
    assert_eq!(inferno.rgb(0.0), hex(0x000004));
    assert_eq!(inferno.rgb(1.0), hex(0xfcffa4));
    let viridis = ColourMap::by_name("viridis").expect("viridis");
    assert_eq!(viridis.rgb(0.0), hex(0x440154));
    assert_eq!(viridis.rgb(1.0), hex(0xfde725));
    // and the middle follows colorous
    let mid = colorous::VIRIDIS.eval_rational(128, 256);
    assert_eq!(viridis.rgb(128.0 / 255.0), [mid.r, mid.g, mid.b]);
    for name in COLOUR_MAPS {
        assert_eq!(ColourMap::by_name(name).expect("listed").name(), *name);
    }
}

fn render_band(legend: &Legend, heat_value: f32) -> (RgbImage, Vec<u8>, BandLayout) {
    let font = font();
    let g = grey(64, 64);
    let heat = Array2::from_elem((64, 64), heat_value);
    let image = render_overlay(g.view(), heat.view(), &style("viridis", 0.5), legend, &font)
        .expect("renders");
    let band = legend::layout(legend, heat_value > 0.0, image.columns, &font).expect("layout");
    let top = image.rows - band.height;
    (image.clone(), rows_from(&image, top), band)
}

#[test]
fn the_band_holds_drawn_text_and_the_untrained_warning() {
    let (image, trained, band) = render_band(&legend(true), 1.0);
    let top = image.rows - band.height;
    // every laid-out line has ink: pixels in its box that differ from what lies under it
    for line in &band.texts {
        let under = band
            .fills
            .iter()
            .find(|(r, _)| {
                (r.y as i32..(r.y + r.height) as i32).contains(&line.y)
                    && r.x as i32 <= line.x
                    && line.x < (r.x + r.width) as i32
            })
            .map_or(BACKGROUND, |(_, colour)| *colour);
        let mut ink = 0;
        for y in line.y..line.y + line.extent.height as i32 {
            for x in line.x..line.x + line.extent.width as i32 {
                if pixel(&image, top + y as u32, x as u32) != under {
                    ink += 1;
                }
            }
        }
        assert!(ink > 20, "{:?} has {ink} inked pixels", line.text);
    }
    let texts: Vec<&str> = band.texts.iter().map(|t| t.text.as_str()).collect();
    assert!(texts.contains(&"NOT FOR DIAGNOSTIC USE"), "{texts:?}");
    assert!(texts.contains(&"predicted: glioma 97.3%"), "{texts:?}");
    assert!(
        texts.contains(&"densenet169-brain v3 - gradcam"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"low") && texts.contains(&"high"),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("UNTRAINED")), "{texts:?}");
    let has = |pixels: &[u8], colour: [u8; 3]| pixels.chunks(3).any(|p| p == colour);
    assert!(has(&trained, WARNING.0), "red banner drawn");
    assert!(!has(&trained, UNTRAINED_WARNING.0));

    let (_, untrained, untrained_band) = render_band(&legend(false), 1.0);
    assert_ne!(trained, untrained);
    assert!(has(&untrained, UNTRAINED_WARNING.0), "amber banner drawn");
    let banners: Vec<_> = untrained_band
        .texts
        .iter()
        .filter(|t| t.text.contains("NOT FOR") || t.text.contains("UNTRAINED"))
        .collect();
    assert_eq!(banners.len(), 2);
    assert_eq!(banners[0].face, banners[1].face, "equally prominent");
    assert!(banners[0].face.bold && banners[0].face.size > band.texts[2].face.size);
}

#[test]
fn zero_heat_colours_nothing_and_says_no_evidence() {
    let (image, band_pixels, band) = render_band(&legend(true), 0.0);
    let g = grey(64, 64);
    let k = image.columns / 64;
    for y in 0..64 * k {
        for x in 0..image.columns {
            assert_eq!(
                pixel(&image, y, x),
                [level(g[[(y / k) as usize, (x / k) as usize]]); 3]
            );
        }
    }
    assert!(band.texts.iter().any(|t| t.text.contains("no evidence")));
    let (_, with_evidence, _) = render_band(&legend(true), 1.0);
    assert_ne!(band_pixels, with_evidence);
}

/// The width of `text` by the font's own advances and kerning, independent of the renderer.
fn advance_width(font: &Font, size: f32, text: &str) -> f32 {
    let scaled = font.face().as_scaled(PxScale::from(size));
    let mut width = 0.0;
    let mut previous = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(previous) = previous {
            width += scaled.kern(previous, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

#[test]
fn large_and_non_square_slices_render_without_clipping() {
    let font = font();
    let mut long = legend(false);
    long.model_name =
        "densenet169-brain-tumour-finetuned-on-site-data-2026-with-a-very-long-name".into();
    long.notes = vec![
        "62% of the evidence lies outside the brain: check the skull and the background".into(),
        "deletion AUC 0.41 is worse than a random map (0.38 expected): treat with care".into(),
        "x".repeat(120),
    ];
    for (rows, columns) in [(512, 512), (256, 192), (64, 64)] {
        let g = grey(rows, columns);
        let heat = Array2::from_shape_fn((rows, columns), |(r, c)| (r + c) as f32);
        let image = render_overlay(g.view(), heat.view(), &style("magma", 0.6), &long, &font)
            .expect("renders");
        let band = legend::layout(&long, true, image.columns, &font).expect("layout");
        let top = image.rows - band.height;
        for line in &band.texts {
            let independent = advance_width(&font, line.face.size, &line.text);
            assert!(
                independent <= line.extent.width as f32,
                "{:?}: {independent} > {}",
                line.text,
                line.extent.width
            );
            assert!(line.x >= 0, "{:?} starts at {}", line.text, line.x);
            assert!(
                line.x as u32 + line.extent.width <= image.columns,
                "{rows}x{columns}: {:?} ends at {} of {}",
                line.text,
                line.x as u32 + line.extent.width,
                image.columns
            );
            assert!(line.y >= 0 && line.y as u32 + line.extent.height <= band.height);
        }
        // nothing was dropped: every word of the legend is somewhere in the band
        let all: String = band.texts.iter().map(|t| t.text.as_str()).collect();
        for word in long
            .notes
            .iter()
            .flat_map(|n| n.split_whitespace())
            .filter(|w| w.len() < 40)
        {
            assert!(all.contains(word), "{word:?} missing");
        }
        assert!(all.contains(&long.model_name[..30]));
        assert!(all.matches('x').count() >= 120);
        // and no ink touches the canvas's left or right edge (outside the banners)
        let banner_rows: Vec<(u32, u32)> = band
            .fills
            .iter()
            .map(|(r, _)| (r.y, r.y + r.height))
            .collect();
        for y in 0..band.height {
            if banner_rows.iter().any(|(a, b)| (*a..*b).contains(&y)) {
                continue;
            }
            for x in [0, 1, image.columns - 2, image.columns - 1] {
                assert_eq!(pixel(&image, top + y, x), BACKGROUND, "edge ink at {y},{x}");
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors_that_say_why() {
    let font = font();
    let g = grey(32, 32);
    let heat = Array2::<f32>::zeros((32, 32));
    let legend = legend(true);
    let good = style("inferno", 0.5);

    let wrong = Array2::<f32>::zeros((32, 31));
    let e = render_overlay(g.view(), wrong.view(), &good, &legend, &font).unwrap_err();
    assert!(matches!(e, RenderError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("32x31"), "{e}");

    let mut nan = heat.clone();
    nan[[3, 4]] = f32::NAN;
    let e = render_overlay(g.view(), nan.view(), &good, &legend, &font).unwrap_err();
    assert!(
        matches!(
            e,
            RenderError::NonFiniteHeat {
                row: 3,
                column: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("NaN"), "{e}");

    let mut negative = heat.clone();
    negative[[1, 2]] = -0.5;
    let e = render_overlay(g.view(), negative.view(), &good, &legend, &font).unwrap_err();
    assert!(matches!(e, RenderError::NegativeHeat { .. }), "{e}");

    for opacity in [-0.1, 1.5, f32::NAN] {
        let e = render_overlay(
            g.view(),
            heat.view(),
            &style("inferno", opacity),
            &legend,
            &font,
        )
        .unwrap_err();
        assert!(matches!(e, RenderError::Opacity { .. }), "{e}");
    }

    let empty = Array2::<f32>::zeros((0, 0));
    let e = render_overlay(empty.view(), empty.view(), &good, &legend, &font).unwrap_err();
    assert!(matches!(e, RenderError::EmptySlice { .. }), "{e}");

    let e = ColourMap::by_name("jet").unwrap_err();
    let message = e.to_string();
    assert!(message.contains("jet"), "{message}");
    for name in COLOUR_MAPS {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn font_errors_name_the_paths() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let missing = dir.path().join("NoSuchFont.ttf");
    let e = Font::find(Some(&missing)).unwrap_err();
    assert!(matches!(e, RenderError::FontNotFound { .. }), "{e}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    let tried: Vec<PathBuf> = ["a.ttf", "b/c.ttf", "d.ttf"]
        .iter()
        .map(|p| dir.path().join(p))
        .collect();
    let e = Font::first_of(&tried).unwrap_err();
    for path in &tried {
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }
    assert!(e.to_string().contains("fonts-dejavu-core"), "{e}");

    let garbage = dir.path().join("garbage.ttf");
    std::fs::write(&garbage, b"this is not a font").expect("write");
    let e = Font::find(Some(&garbage)).unwrap_err();
    assert!(matches!(e, RenderError::FontParse { .. }), "{e}");
    assert!(
        e.to_string().contains(&garbage.display().to_string()),
        "{e}"
    );

    // the default search ends with the system fonts, and finds one of its candidates
    let candidates = Font::candidates(None);
    let found = font();
    if std::env::var_os("DICOM_XAI_FONT").is_none() {
        assert!(
            candidates.iter().any(|c| c == found.path()),
            "{candidates:?}"
        );
    }
    let explicit = Font::find(Some(found.path())).expect("explicit path");
    assert_eq!(explicit.path(), found.path());
}

#[test]
fn rendering_is_deterministic() {
    let font = font();
    let g = grey(100, 80);
    let heat = Array2::from_shape_fn((100, 80), |(r, c)| ((r * 31 + c * 17) % 23) as f32);
    let mut legend = legend(false);
    legend.notes.push("second note".into());
    let render = || {
        render_overlay(g.view(), heat.view(), &style("plasma", 0.7), &legend, &font)
            .expect("renders")
    };
    let (a, b) = (render(), render());
    assert_eq!((a.rows, a.columns), (b.rows, b.columns));
    assert!(a.pixels == b.pixels, "two renders differ");
}

#[test]
fn save_png_round_trips_the_pixels() {
    let font = font();
    let g = grey(64, 48);
    let heat = Array2::from_shape_fn((64, 48), |(r, c)| (r * c) as f32);
    let image = render_overlay(
        g.view(),
        heat.view(),
        &style("cividis", 0.6),
        &legend(true),
        &font,
    )
    .expect("renders");
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("overlay.png");
    save_png(&image, &path).expect("saves");
    let back = image::open(&path).expect("reads back").to_rgb8();
    assert_eq!((back.height(), back.width()), (image.rows, image.columns));
    assert!(
        back.into_raw() == image.pixels,
        "pixels differ after the PNG round trip"
    );

    let broken = RgbImage {
        rows: 2,
        columns: 2,
        pixels: vec![0; 5],
    };
    let e = save_png(&broken, &path).unwrap_err();
    assert!(matches!(e, RenderError::PixelCount { .. }), "{e}");
    let e = save_png(&image, &dir.path().join("no/such/folder/x.png")).unwrap_err();
    assert!(e.to_string().contains("no/such/folder"), "{e}");
}

/// A deterministic pseudo-random value in [0, 1) for a pixel (an integer hash).
fn noise(x: usize, y: usize, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h & 0xFFFF) as f32 / 65536.0
}

/// Value noise: `noise` on a coarse grid, bilinearly interpolated.
fn smooth_noise(x: f32, y: f32, cell: f32, seed: u32) -> f32 {
    let (gx, gy) = (x / cell, y / cell);
    let (x0, y0) = (gx.floor(), gy.floor());
    let (fx, fy) = (gx - x0, gy - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let at = |dx: f32, dy: f32| noise((x0 + dx) as usize, (y0 + dy) as usize, seed);
    let top = at(0.0, 0.0) * (1.0 - sx) + at(1.0, 0.0) * sx;
    let bottom = at(0.0, 1.0) * (1.0 - sx) + at(1.0, 1.0) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// An axial T1-like brain slice: scalp, skull, CSF, folded cortex over white matter,
/// ventricles and a bright lesion in the right frontal lobe; plus an explanation that mostly
/// finds the lesion but leaks onto the scalp.
fn brain_like(size: usize) -> (Array2<f32>, Array2<f32>) {
    let s = size as f32;
    let (cx, cy) = (s * 0.5, s * 0.52);
    let (lesion_x, lesion_y) = (s * 0.62, s * 0.36);
    // the tissue at a point, without noise
    let tissue = |x: f32, y: f32| {
        let ellipse = |a: f32, b: f32| ((x - cx) / (s * a)).powi(2) + ((y - cy) / (s * b)).powi(2);
        let head = ellipse(0.40, 0.46);
        let brain = ellipse(0.355, 0.41);
        if head > 1.0 {
            return 0.02; // air
        } else if head > 0.88 {
            return 0.78; // scalp fat
        } else if head > 0.80 {
            return 0.08; // skull
        } else if brain > 0.95 {
            return 0.16; // CSF
        }
        let radius = brain.sqrt();
        let angle = (y - cy).atan2(x - cx) / std::f32::consts::TAU + 0.5;
        // gyri: white-matter fingers under a cortical ribbon, CSF-filled sulci between them
        // (noise in polar coordinates, so that the folds run radially)
        let warp = smooth_noise(x, y, s / 10.0, 5) - 0.5;
        let fold = smooth_noise(angle * 70.0 + 1.5 * warp, radius * 4.0, 1.0, 13);
        let from_sulcus = (fold - 0.5).abs() * 2.0; // 0 on a sulcus, 1 mid-gyrus
        let mut v = if radius < 0.60 + 0.30 * from_sulcus.sqrt() {
            0.66
        } else if from_sulcus < 0.10 && radius > 0.7 {
            0.18
        } else {
            0.44
        };
        if (x - cx).abs() < s * 0.005 && radius > 0.6 {
            v = 0.18; // the interhemispheric fissure
        }
        // lateral ventricles: two crescents either side of the midline
        let bend = ((y - cy) / (s * 0.12)).powi(2) * s * 0.03;
        let vx = (x - cx).abs() - s * 0.04 - bend;
        if (vx / (s * 0.025)).powi(2) + ((y - cy) / (s * 0.12)).powi(2) < 1.0 {
            v = 0.15;
        }
        let d = ((x - lesion_x).powi(2) + (y - lesion_y).powi(2)).sqrt() / s;
        if d < 0.05 {
            v = 0.9; // enhancing lesion
        } else if d < 0.058 {
            v = 0.6; // its rim
        } else if d < 0.09 {
            v = v * 0.7 + 0.05; // oedema
        }
        v
    };
    let grey = Array2::from_shape_fn((size, size), |(r, c)| {
        let (x, y) = (c as f32, r as f32);
        // 3x3 samples per pixel: partial-volume edges, as a scanner sees them
        let mut sum = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                sum += tissue(x + (i as f32 + 0.5) / 3.0, y + (j as f32 + 0.5) / 3.0);
            }
        }
        let bias = 0.06 * (smooth_noise(x, y, s / 6.0, 7) - 0.5); // coil shading
        let texture = 0.05 * (smooth_noise(x, y, s / 50.0, 9) - 0.5);
        let thermal = 0.03 * (noise(c, r, 3) - 0.5);
        (sum / 9.0 * (1.0 + bias) + texture + thermal).clamp(0.0, 1.0)
    });
    let heat = Array2::from_shape_fn((size, size), |(r, c)| {
        let (x, y) = (c as f32 + 0.5, r as f32 + 0.5);
        let blob = |bx: f32, by: f32, w: f32| {
            (-((x - bx).powi(2) + (y - by).powi(2)) / (2.0 * (s * w).powi(2))).exp()
        };
        // coarse, like an upsampled 15x15 Grad-CAM
        let lumpy = 0.85 + 0.3 * smooth_noise(x, y, s / 12.0, 11);
        ((blob(lesion_x, lesion_y, 0.07) + 0.7 * blob(s * 0.84, s * 0.2, 0.045)) * lumpy).max(0.0)
    });
    (grey, heat)
}

#[test]
#[ignore = "writes docs/overlay-example.png; run with --ignored to regenerate"]
fn example_overlay_for_the_documentation() {
    let font = font();
    let (grey, heat) = brain_like(256);
    let legend = Legend {
        model_name: "vgg16-brain-tumour".into(),
        model_version: "0.1.1".into(),
        trained: true,
        method: "gradcam".into(),
        class_label: "glioma".into(),
        probability: 0.973,
        notes: vec!["31% of the evidence lies outside the brain (scalp, top right)".into()],
    };
    let image = render_overlay(
        grey.view(),
        heat.view(),
        &style("inferno", 0.6),
        &legend,
        &font,
    )
    .expect("renders");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).expect("docs folder");
    save_png(&image, &docs.join("overlay-example.png")).expect("saves");
}
