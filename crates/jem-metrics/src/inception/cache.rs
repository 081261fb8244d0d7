//! pytorch-fid's weights where pytorch-fid itself keeps them (torch hub's cache).

use super::FID_WEIGHTS_FILE;

/// Where pytorch-fid keeps the weights it downloaded: torch hub's checkpoint folder,
/// `$TORCH_HOME/hub/checkpoints`, else `$XDG_CACHE_HOME/torch/hub/checkpoints`, else
/// `~/.cache/torch/hub/checkpoints` (as `torch.hub.get_dir()`), joined with
/// [`FID_WEIGHTS_FILE`](super::FID_WEIGHTS_FILE); `None` when the file is not there.
pub fn pytorch_fid_cached_weights() -> Option<std::path::PathBuf> {
    let file = torch_hub_checkpoints(|k| std::env::var_os(k))?.join(FID_WEIGHTS_FILE);
    file.is_file().then_some(file)
}

fn torch_hub_checkpoints(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let torch_home = set("TORCH_HOME")
        .or_else(|| set("XDG_CACHE_HOME").map(|c| c.join("torch")))
        .or_else(|| set("HOME").map(|h| h.join(".cache").join("torch")))?;
    Some(torch_home.join("hub").join("checkpoints"))
}

/// pytorch-fid's weights from `data_dir/inception/` ([`FID_WEIGHTS_FILE`](super::FID_WEIGHTS_FILE), where
/// `jem data fetch inception` puts them), else from pytorch-fid's own cache
/// ([`pytorch_fid_cached_weights`]); `None` when neither has them.
pub fn find_fid_weights(data_dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let ours = data_dir.join("inception").join(FID_WEIGHTS_FILE);
    if ours.is_file() {
        return Some(ours);
    }
    pytorch_fid_cached_weights()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    #[test]
    fn torch_hub_folder_follows_torch_home_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[
            ("TORCH_HOME", "/t"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            torch_hub_checkpoints(all),
            Some(PathBuf::from("/t/hub/checkpoints"))
        );
        let xdg = env(&[("TORCH_HOME", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            torch_hub_checkpoints(xdg),
            Some(PathBuf::from("/x/torch/hub/checkpoints"))
        );
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            torch_hub_checkpoints(home),
            Some(PathBuf::from("/h/.cache/torch/hub/checkpoints"))
        );
        assert_eq!(torch_hub_checkpoints(env(&[])), None);
    }
}
