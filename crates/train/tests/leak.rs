mod common;
use common::*;
use crosslore_train::config::Method;
use crosslore_train::memory::current_rss_bytes;
use crosslore_train::Trainer;

#[test]
#[ignore]
fn leak_probe() {
    for (method, layerwise, clip, rec) in [
        (Method::Galore, true, 0.0, false),
        (Method::Adamw, true, 0.0, false),
        (Method::Adamw, true, 0.0, false),
        (Method::Adamw, true, 0.0, true),
        (Method::Adamw, true, 0.5, false),
        (Method::Adamw, false, 0.0, false),
    ] {
        {
            {
                let mut cfg = tiny_train_config(method);
                cfg.layerwise = layerwise;
                cfg.max_grad_norm = clip;
                cfg.recompute = rec;
                cfg.max_steps = 100000;
                let mut t =
                    Trainer::new(cfg.clone(), tiny_model(&cfg), dataset(16, 11), 0).unwrap();
                for _ in 0..50 {
                    t.step().unwrap();
                }
                let a = current_rss_bytes().unwrap();
                for _ in 0..1000 {
                    t.step().unwrap();
                }
                let b = current_rss_bytes().unwrap();
                println!(
                    "LEAK {method:?} lw={layerwise} clip={clip} rec={rec}: {} KB per step",
                    (b as f64 - a as f64) / 1000.0 / 1024.0
                );
            }
        }
    }
}
