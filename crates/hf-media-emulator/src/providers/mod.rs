//! One module per emulated provider, each speaking that provider's protocol under `/{provider}`.

// Handlers' helpers return the provider's ready error answer, as `support`'s do.
#![allow(clippy::result_large_err)]

mod fal_ai;
mod hf_inference;
mod novita;
mod nscale;
mod openai;
mod replicate;
mod together;
mod wavespeed;
mod zai_org;

use axum::Router;

use crate::support::Shared;

/// Every provider's routes with the prefix they are served under, and the OpenAI-compatible images server
/// (`/openai`, not a Hugging Face provider).
pub(crate) fn routes() -> Vec<(&'static str, Router<Shared>)> {
    vec![
        ("/fal-ai", fal_ai::routes()),
        ("/hf-inference", hf_inference::routes()),
        ("/novita", novita::routes()),
        ("/nscale", nscale::routes()),
        ("/openai", openai::routes()),
        ("/replicate", replicate::routes()),
        ("/together", together::routes()),
        ("/wavespeed", wavespeed::routes()),
        ("/zai-org", zai_org::routes()),
    ]
}

/// What the providers' tests share: a served emulator, an HTTP client, input images and checks of media
/// made from them.
#[cfg(test)]
pub(crate) mod test_support {
    use base64::Engine as _;
    use image::{Rgb, RgbImage};
    use serde_json::Value;

    use crate::{Emulator, RunningEmulator};

    /// An emulator served on a free local port, with the handle that scripts its behaviour.
    pub(crate) async fn serve_scripted() -> (Emulator, RunningEmulator) {
        let emulator = Emulator::new();
        let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        (emulator, running)
    }

    /// An emulator served on a free local port.
    pub(crate) async fn serve() -> RunningEmulator {
        serve_scripted().await.1
    }

    pub(crate) fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Sends `request` until the status at JSON pointer `status` of the answer reads `done` (fewer than 5
    /// polls); returns the statuses seen and the last answer.
    pub(crate) async fn poll_until(
        request: impl Fn() -> reqwest::RequestBuilder,
        status: &str,
        done: &str,
    ) -> (Vec<String>, Value) {
        let mut statuses = Vec::new();
        loop {
            let body: Value = request().send().await.unwrap().json().await.unwrap();
            statuses.push(body.pointer(status).unwrap().as_str().unwrap().to_owned());
            if body.pointer(status).unwrap() == done {
                return (statuses, body);
            }
            assert!(statuses.len() < 5, "{statuses:?}");
        }
    }

    /// A `w × h` picture of four flat quadrants: red, green, blue, yellow.
    pub(crate) fn quadrants(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => Rgb([230, 20, 20]),
            (false, true) => Rgb([20, 200, 20]),
            (true, false) => Rgb([20, 20, 230]),
            (false, false) => Rgb([230, 230, 20]),
        })
    }

    /// A flat picture.
    pub(crate) fn flat(w: u32, h: u32, color: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(color))
    }

    /// PNG bytes of a picture.
    pub(crate) fn png(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// Bare base64.
    pub(crate) fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A `data:` URL.
    pub(crate) fn data_url(bytes: &[u8], mime: &str) -> String {
        format!("data:{mime};base64,{}", b64(bytes))
    }

    /// The 64×48 quadrants picture as a PNG data URL.
    pub(crate) fn quadrants_url() -> String {
        data_url(&png(&quadrants(64, 48)), "image/png")
    }

    /// Mean absolute difference per channel of two pictures, the second sampled at the same relative
    /// positions (nearest), over the first one's interior (its frame left out).
    fn distance(a: &RgbImage, b: &RgbImage) -> f64 {
        let (w, h) = a.dimensions();
        let border = (w.min(h) / 32).max(1) + 1;
        let mut sum = 0u64;
        let mut count = 0u64;
        for y in border..h.saturating_sub(border) {
            for x in border..w.saturating_sub(border) {
                let p = a.get_pixel(x, y).0;
                let q = b.get_pixel(x * b.width() / w, y * b.height() / h).0;
                sum += p.iter().zip(q).map(|(&p, q)| u64::from(p.abs_diff(q))).sum::<u64>();
                count += 3;
            }
        }
        sum as f64 / count.max(1) as f64
    }

    /// Checks that `bytes` is an image of `size` made from `input`: much closer to it than to the plain
    /// picture of `prompt`. Returns the decoded image.
    pub(crate) fn assert_edit_of(bytes: &[u8], input: &RgbImage, size: (u32, u32), prompt: &str) -> RgbImage {
        let output = image::load_from_memory(bytes).unwrap().to_rgb8();
        assert_eq!(output.dimensions(), size);
        let plain = crate::media::render_image(prompt, None, size.0, size.1, crate::ImageFormat::Png).unwrap();
        let plain = image::load_from_memory(&plain).unwrap().to_rgb8();
        let (to_input, to_plain) = (distance(&output, input), distance(&output, &plain));
        assert!(to_input < 70.0 && to_input * 1.5 < to_plain, "{to_input} vs {to_plain}");
        output
    }

    /// Checks that `bytes` is an edit of two inputs side by side: the left half reddish (the first input
    /// was red), the right half bluish (the second was blue).
    pub(crate) fn assert_red_then_blue(bytes: &[u8], size: (u32, u32)) {
        let output = image::load_from_memory(bytes).unwrap().to_rgb8();
        assert_eq!(output.dimensions(), size);
        let (w, h) = size;
        let left = output.get_pixel(w / 4, h / 2).0;
        let right = output.get_pixel(3 * w / 4, h / 2).0;
        assert!(left[0] > left[2] + 60, "{left:?}");
        assert!(right[2] > right[0] + 60, "{right:?}");
    }

    /// A red and a blue 32×48 picture, as PNG data URLs.
    pub(crate) fn red_and_blue_urls() -> (String, String) {
        (
            data_url(&png(&flat(32, 48, [230, 20, 20])), "image/png"),
            data_url(&png(&flat(32, 48, [20, 20, 230])), "image/png"),
        )
    }

    /// Checks that `bytes` is an MP4 of `frames` frames of `size` whose first frame is the edit of the
    /// 64×48 quadrants with `prompt` and `seed` (its luma is stored losslessly).
    pub(crate) fn assert_animation_of_quadrants(bytes: &[u8], size: (u32, u32), frames: u32, prompt: &str, seed: u64) {
        let mut reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), bytes.len() as u64).unwrap();
        let track = reader.tracks().values().next().unwrap();
        assert_eq!((u32::from(track.width()), u32::from(track.height())), size);
        assert_eq!(track.sample_count(), frames);
        let edit = crate::media::edit_image(
            &[quadrants(64, 48)],
            prompt,
            Some(seed),
            size.0,
            size.1,
            crate::ImageFormat::Png,
        )
        .unwrap();
        let edit = image::load_from_memory(&edit).unwrap().to_rgb8();
        let row: Vec<u8> = (0..16)
            .map(|x| {
                let [r, g, b] = edit.get_pixel(x, 8).0.map(i32::from);
                ((77 * r + 150 * g + 29 * b + 128) >> 8) as u8
            })
            .collect();
        let sample = reader.read_sample(1, 1).unwrap().unwrap().bytes;
        assert!(
            sample.windows(16).any(|w| w == row.as_slice()),
            "the first frame is not the edited input"
        );
    }
}
