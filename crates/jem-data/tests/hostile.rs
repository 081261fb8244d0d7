//! Files made by a hostile user: each is refused with an error naming the file and the fault,
//! without a panic, an allocation the file cannot justify, or a read outside the data folder.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::GzEncoder, write::ZlibEncoder};
use jem_data::{celeba, download, idx, matv5, svhn};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = GzEncoder::new(Vec::new(), Compression::best());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        h.extend(d.to_be_bytes());
    }
    h
}

#[test]
fn a_gzip_bomb_stops_at_the_declared_size() {
    // the header declares 16 bytes; the stream goes on for 64 MiB of zeros (65 KB compressed)
    let mut raw = idx_header(&[16]);
    raw.resize(raw.len() + (64 << 20), 0);
    let bomb = gzip(&raw);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let e = idx::parse_idx(&bomb, Path::new("bomb.gz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bomb.gz") && e.contains("more than the 16 data bytes"),
        "{e}"
    );
}

#[test]
fn declared_sizes_deflate_cannot_produce_are_refused_before_inflating() {
    // 2^32 - 1 images of 255 x 255 from a few bytes
    let bomb = gzip(&idx_header(&[u32::MAX, 255, 255]));
    let e = idx::parse_idx(&bomb, Path::new("x.gz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("more than a") && e.contains("gzip stream can hold"),
        "{e}"
    );
    // a product that overflows usize is named as such, raw or compressed
    let dims = [u32::MAX, u32::MAX, u32::MAX];
    for bytes in [idx_header(&dims), gzip(&idx_header(&dims))] {
        let e = idx::parse_idx(&bytes, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflow"), "{e}");
    }
}

/// A MAT-file with one `miMATRIX` element of class uint8 whose dimensions are `dims`.
fn mat_with_dims(dims: &[i32], data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    let mut el = |t: u32, d: &[u8]| {
        m.extend(t.to_le_bytes());
        m.extend((d.len() as u32).to_le_bytes());
        m.extend(d);
        m.resize(m.len().div_ceil(8) * 8, 0);
    };
    el(6, &[9, 0, 0, 0, 0, 0, 0, 0]); // flags: class uint8
    el(
        5,
        &dims
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    el(1, b"X");
    el(2, data);
    let mut out = b"MATLAB 5.0 MAT-file".to_vec();
    out.resize(124, b' ');
    out.extend([0, 1, b'I', b'M']);
    out.extend(14u32.to_le_bytes());
    out.extend((m.len() as u32).to_le_bytes());
    out.extend(m);
    out
}

#[test]
fn mat_dimensions_that_overflow_are_errors() {
    let good = mat_with_dims(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(matv5::parse_mat(&good).unwrap()[0].dims, vec![2, 2]);
    let bad = mat_with_dims(&[i32::MAX, i32::MAX, i32::MAX, 32], &[1, 2, 3, 4]);
    let e = matv5::parse_mat(&bad).unwrap_err();
    assert!(e.contains("data bytes for dimensions"), "{e}");
    // through the SVHN reader, with the file named
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train_32x32.mat");
    std::fs::write(&p, &bad).unwrap();
    let e = svhn::read_svhn_file(&p).unwrap_err().to_string();
    assert!(e.contains("train_32x32.mat"), "{e}");
}

/// A MAT-file whose one element is `inner`, zlib-compressed (`miCOMPRESSED`).
fn compressed_mat(inner: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    z.write_all(inner).unwrap();
    let packed = z.finish().unwrap();
    let mut file = mat_with_dims(&[1], &[0])[..128].to_vec();
    file.extend(15u32.to_le_bytes());
    file.extend((packed.len() as u32).to_le_bytes());
    file.extend(&packed);
    file
}

#[test]
fn a_compressed_mat_element_inflates_only_to_its_declared_size() {
    let inner = mat_with_dims(&[2, 2], &[1, 2, 3, 4])[128..].to_vec();
    let declared = u32::from_le_bytes(inner[4..8].try_into().unwrap()) as usize;
    assert_eq!(matv5::parse_mat(&compressed_mat(&inner)).unwrap().len(), 1);
    let mut padded = inner.clone();
    padded.resize(declared + 8 + (64 << 20), 0); // 64 MiB past the element
    let e = matv5::parse_mat(&compressed_mat(&padded)).unwrap_err();
    assert!(e.contains("inflates past the"), "{e}");
    // an element declaring 4 GiB inside 100 compressed bytes is refused before inflating
    let mut liar = inner[..8].to_vec();
    liar[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = matv5::parse_mat(&compressed_mat(&liar)).unwrap_err();
    assert!(e.contains("more than deflate can produce"), "{e}");
}

#[test]
fn celeba_lists_cannot_name_files_outside_the_image_folder() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list_eval_partition.txt");
    for name in [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b.jpg",
        "sub/x.jpg",
        "..",
    ] {
        std::fs::write(&list, format!("000001.jpg 0\n{name} 0\n")).unwrap();
        let e = celeba::read_partition(&list).unwrap_err().to_string();
        assert!(
            e.contains("list_eval_partition.txt")
                && e.contains("line 2")
                && e.contains("plain file name"),
            "{name}: {e}"
        );
    }
    std::fs::write(&list, "000001.jpg 0\n000002.jpg 2\n").unwrap();
    assert_eq!(celeba::read_partition(&list).unwrap().len(), 2);
}

#[test]
fn archive_entries_that_leave_the_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    std::fs::create_dir_all(&out).unwrap();
    // tar: the builder refuses `..`, so the name goes into the header by hand
    let enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(enc);
    let mut h = tar::Header::new_old();
    let name = b"../escaped.txt";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, &b"bad"[..]).unwrap();
    let tgz = dir.path().join("evil.tar.gz");
    std::fs::write(&tgz, tar.into_inner().unwrap().finish().unwrap()).unwrap();
    let e = download::extract_tar_gz(&tgz, &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("evil.tar.gz") && e.contains("../escaped.txt"),
        "{e}"
    );
    // zip
    let zpath = dir.path().join("evil.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
    z.start_file("../escaped.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(b"bad").unwrap();
    z.finish().unwrap();
    let e = download::extract_zip(&zpath, &out).unwrap_err().to_string();
    assert!(
        e.contains("evil.zip") && e.contains("../escaped.txt"),
        "{e}"
    );
    assert!(!dir.path().join("escaped.txt").exists());
}

#[test]
fn padding_that_would_need_hundreds_of_gigabytes_is_refused() {
    use jem_data::stats::ClassGaussians;
    use jem_data::transform::Transform;
    let set = jem_data::ImageSet::new(vec![0; 10 * 784], (0..10).collect(), [1, 28, 28], 10, "t")
        .unwrap();
    // `jem data class-stats --pad-to 320`: 10 covariance factors of 102,400^2 values
    let pad = |s: usize| Transform {
        pad_to: Some([s, s]),
        ..Transform::default()
    };
    let e = ClassGaussians::compute(&set, &pad(320), 1e-4)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("over the limit of 8 GiB") && e.contains("pad_to"),
        "{e}"
    );
    let e = ClassGaussians::compute(&set, &pad(5000), 1e-4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("transform.pad_to") && e.contains("1024"), "{e}");
}

#[test]
fn a_tiny_jpeg_declaring_a_huge_image_is_refused() {
    // found by `cargo xtask fuzz jpeg`: 739 bytes declaring 65300x255 pixels held 100 MB
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-jpeg-65300-wide.jpg");
    let e = celeba::prepare_image(&path, celeba::CelebaResize::CenterCrop)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fuzz-jpeg-65300-wide.jpg") && e.contains("2048 pixels a side"),
        "{e}"
    );
}
