//! A short fixed-seed fuzz pass of every parser (CI); `cargo xtask fuzz` runs them longer.

#[global_allocator]
static ALLOC: jem_fuzz::alloc::Tracking = jem_fuzz::alloc::Tracking;

#[test]
fn every_parser_survives_a_fixed_seed_pass() {
    jem_fuzz::quiet_panics();
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for t in jem_fuzz::targets() {
        let r = jem_fuzz::run(&t, 1000, 2026, scratch.path());
        println!("{:<18} {:>6} execs {:>6.2} s", r.target, r.execs, r.seconds);
        if let Some(f) = r.finding {
            failures.push(format!(
                "{}: {} ({} bytes: {:02x?})",
                t.name,
                f.message,
                f.input.len(),
                &f.input[..f.input.len().min(64)]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_tracking_allocator_sees_what_a_target_holds() {
    let (out, peak) = jem_fuzz::alloc::measure(|_| {}, || vec![1u8; 10 << 20].len());
    assert_eq!(out.unwrap(), 10 << 20);
    assert!(peak >= 10 << 20, "{peak}");
    let (out, _) = jem_fuzz::alloc::measure(|_| {}, || panic!("boom"));
    assert!(out.is_err());
}

#[test]
fn every_seed_is_accepted_by_its_parser() {
    // an invalid seed would make the mutations test nothing but the first error path
    let scratch = tempfile::tempdir().unwrap();
    for t in jem_fuzz::targets() {
        for (i, s) in (t.seeds)().iter().enumerate() {
            assert_eq!(
                jem_fuzz::check(&t, s, scratch.path()),
                Ok(true),
                "{} seed {i}",
                t.name
            );
        }
    }
}
