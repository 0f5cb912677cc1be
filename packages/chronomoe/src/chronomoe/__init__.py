"""ChronoMoE: mixture-of-experts routers with experts tracked on three clocks."""
