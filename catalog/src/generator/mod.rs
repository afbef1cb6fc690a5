//! The demo data generator: deterministic listening histories and a matching catalog.
//!
//! Everything is a pure function of [`GenerateConfig`]: the same config gives the same
//! Parquet bytes. Each listener has its own random stream, so adding listeners does not
//! change the existing ones.

mod names;
mod rng;

use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};

use crate::dataset::{DatasetManifest, DatasetWriter};
use crate::error::Result;
pub use names::user_id;
use names::{GENRES, artist_name, title, uri};
use rng::{Rng, Weighted};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Number of listeners (`u0001`, `u0002`, ...).
    pub users: u32,
    /// Years of history, ending at `end`.
    pub years: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// First day not generated (exclusive end, midnight UTC).
    pub end: NaiveDate,
    /// Number of artists; albums and tracks follow (1 to 16 albums of 5 to 12 tracks each).
    pub artists: u32,
}

impl GenerateConfig {
    /// First day of the history.
    pub fn start(&self) -> NaiveDate {
        self.end
            .with_year(self.end.year() - self.years as i32)
            .unwrap_or_else(|| self.end - Duration::days(365 * i64::from(self.years)))
    }
}

pub(crate) struct Artist {
    pub(crate) uri: String,
    pub(crate) name: String,
    pub(crate) genre: usize,
}

pub(crate) struct Album {
    pub(crate) uri: String,
    pub(crate) name: String,
    pub(crate) artist: u32,
    pub(crate) release: NaiveDate,
}

pub(crate) struct Track {
    pub(crate) uri: String,
    pub(crate) name: String,
    pub(crate) artist: u32,
    pub(crate) album: u32,
    pub(crate) duration_ms: i64,
}

/// The generated entity catalog, plus the popularity model listeners sample from.
pub(crate) struct Catalog {
    pub(crate) artists: Vec<Artist>,
    pub(crate) albums: Vec<Album>,
    pub(crate) tracks: Vec<Track>,
    /// Tracks of each artist, most popular first.
    artist_tracks: Vec<Vec<u32>>,
    artist_track_dist: Vec<Weighted>,
    /// Artists of each genre, most popular first, with their popularity.
    genre_artists: Vec<Vec<u32>>,
    genre_artist_dist: Vec<Weighted>,
}

/// One listening event, compactly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) user: u32,
    pub(crate) track: u32,
    pub(crate) ts_ms: i64,
    pub(crate) ms_played: i64,
}

fn build_catalog(config: &GenerateConfig) -> Catalog {
    let mut rng = Rng::derive(config.seed, 0x0CA7_A106);
    let genre_dist = Weighted::zipf(GENRES.len(), 0.8);
    let n = config.artists.max(1) as usize;
    let mut artists = Vec::with_capacity(n);
    let mut albums = Vec::new();
    let mut tracks = Vec::new();
    let mut artist_tracks = Vec::with_capacity(n);
    let earliest = NaiveDate::from_ymd_opt(1965, 1, 1).expect("valid date");
    let span_days = (config.end - earliest).num_days().max(1) as u64;
    for a in 0..n {
        artists.push(Artist {
            uri: uri("artist", a as u64),
            name: artist_name(rng.next_u64()),
            genre: genre_dist.sample(&mut rng),
        });
        let mut own = Vec::new();
        // Popular artists have long catalogues, whose deep cuts even fans rarely reach.
        let albums_of_artist = if a < n / 20 {
            rng.range(6, 17)
        } else {
            rng.range(1, 5)
        };
        for _ in 0..albums_of_artist {
            let album = albums.len() as u32;
            albums.push(Album {
                uri: uri("album", u64::from(album)),
                name: title(rng.next_u64()),
                artist: a as u32,
                release: earliest + Duration::days(rng.range(0, span_days) as i64),
            });
            for _ in 0..rng.range(5, 13) {
                let t = tracks.len() as u32;
                tracks.push(Track {
                    uri: uri("track", u64::from(t)),
                    name: title(rng.next_u64()),
                    artist: a as u32,
                    album,
                    duration_ms: rng.range(95_000, 400_000) as i64,
                });
                own.push(t);
            }
        }
        artist_tracks.push(own);
    }
    let artist_track_dist = artist_tracks
        .iter()
        .map(|t| Weighted::zipf(t.len(), 1.5))
        .collect();
    // Artist popularity is Zipf over the artist index; within a genre, keep that order.
    let mut genre_artists = vec![Vec::new(); GENRES.len()];
    for (a, artist) in artists.iter().enumerate() {
        genre_artists[artist.genre].push(a as u32);
    }
    for (g, list) in genre_artists.iter_mut().enumerate() {
        if list.is_empty() {
            // Every genre needs someone to play; borrow the least popular artist.
            list.push((n - 1 - g % n) as u32);
        }
    }
    let genre_artist_dist = genre_artists
        .iter()
        .map(|list| Weighted::new(list.iter().map(|&a| 1.0 / f64::from(a + 1).powf(0.9))))
        .collect();
    Catalog {
        artists,
        albums,
        tracks,
        artist_tracks,
        artist_track_dist,
        genre_artists,
        genre_artist_dist,
    }
}

impl Catalog {
    fn artist_in_genre(&self, genre: usize, rng: &mut Rng) -> u32 {
        self.genre_artists[genre][self.genre_artist_dist[genre].sample(rng)]
    }

    fn track_of(&self, artist: u32, rng: &mut Rng) -> u32 {
        let a = artist as usize;
        self.artist_tracks[a][self.artist_track_dist[a].sample(rng)]
    }
}

/// A listener's taste in one year: genre weights and favourite artists.
struct Taste {
    genres: Vec<f64>,
    genre_dist: Weighted,
    favourites: Vec<u32>,
    favourite_dist: Weighted,
}

impl Taste {
    fn first(catalog: &Catalog, rng: &mut Rng) -> Self {
        let mut genres = vec![0.15; GENRES.len()];
        for w in [6.0, 3.0, 1.5] {
            genres[rng.range(0, GENRES.len() as u64) as usize] += w;
        }
        Self::with_genres(genres, Vec::new(), catalog, rng)
    }

    /// Next year's taste: one favourite genre may give way to a new one, and about half
    /// the favourite artists are replaced.
    fn drift(&self, catalog: &Catalog, rng: &mut Rng) -> Self {
        let mut genres: Vec<f64> = self.genres.iter().map(|w| w * 0.85 + 0.02).collect();
        if rng.chance(0.6) {
            genres[rng.range(0, GENRES.len() as u64) as usize] += 3.0 + rng.f64() * 3.0;
        }
        let kept: Vec<u32> = self
            .favourites
            .iter()
            .copied()
            .filter(|_| rng.chance(0.5))
            .collect();
        Self::with_genres(genres, kept, catalog, rng)
    }

    fn with_genres(
        genres: Vec<f64>,
        mut favourites: Vec<u32>,
        catalog: &Catalog,
        rng: &mut Rng,
    ) -> Self {
        let genre_dist = Weighted::new(genres.iter().copied());
        let target = 12 + rng.range(0, 10) as usize;
        let mut tries = 0;
        while favourites.len() < target && tries < 1000 {
            tries += 1;
            let a = catalog.artist_in_genre(genre_dist.sample(rng), rng);
            if !favourites.contains(&a) {
                favourites.push(a);
            }
        }
        // Shuffle so that the top favourite is not always the globally most popular artist.
        for i in (1..favourites.len()).rev() {
            favourites.swap(i, rng.range(0, i as u64 + 1) as usize);
        }
        let favourite_dist = Weighted::zipf(favourites.len().max(1), 0.9);
        Self {
            genres,
            genre_dist,
            favourites,
            favourite_dist,
        }
    }

    fn next_track(&self, catalog: &Catalog, rng: &mut Rng) -> u32 {
        let artist = if !self.favourites.is_empty() && rng.chance(0.6) {
            self.favourites[self.favourite_dist.sample(rng)]
        } else {
            catalog.artist_in_genre(self.genre_dist.sample(rng), rng)
        };
        catalog.track_of(artist, rng)
    }
}

/// Hour-of-day weights (UTC): a morning commute, lunch, and a long evening.
const HOURS: [f64; 24] = [
    0.6, 0.3, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 2.4, 1.8, 1.2, 1.3, 1.9, 1.7, 1.2, 1.2, 1.5, 2.2, 2.6,
    2.7, 2.6, 2.2, 1.6, 1.0,
];

const DAY_MS: i64 = 86_400_000;

/// All events of one listener, in time order.
fn listener_events(user: u32, config: &GenerateConfig, catalog: &Catalog) -> Vec<Event> {
    let mut rng = Rng::derive(config.seed, 0x05E2_0000 + u64::from(user));
    let start = config.start();
    let days = (config.end - start).num_days();
    let joined = rng.range(0, (days.min(365) as u64).max(1)) as i64;
    let rate = 15.0 + rng.f64() * 45.0;
    let hours = Weighted::new(HOURS);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let end_ms = (config.end - epoch).num_days() * DAY_MS;

    let mut events = Vec::with_capacity((rate * (days - joined) as f64) as usize + 64);
    let mut taste = Taste::first(catalog, &mut rng);
    let mut year = (start + Duration::days(joined)).year();
    let mut day_events = Vec::new();
    for d in joined..days {
        let date = start + Duration::days(d);
        if date.year() != year {
            year = date.year();
            taste = taste.drift(catalog, &mut rng);
        }
        if rng.chance(0.06) {
            continue; // a day without music
        }
        let weekend = date.weekday().number_from_monday() >= 6;
        let plays = rng.poisson(rate * if weekend { 1.25 } else { 1.0 });
        if plays == 0 {
            continue;
        }
        let day_ms = (date - epoch).num_days() * DAY_MS;
        let sessions = 1 + plays / 12;
        day_events.clear();
        let mut left = plays;
        for s in 0..sessions {
            let in_session = if s + 1 == sessions {
                left
            } else {
                plays / sessions
            };
            left -= in_session;
            let mut ts =
                day_ms + hours.sample(&mut rng) as i64 * 3_600_000 + rng.range(0, 3_600_000) as i64;
            for _ in 0..in_session {
                let track = taste.next_track(catalog, &mut rng);
                let duration = catalog.tracks[track as usize].duration_ms;
                let ms_played = if rng.chance(0.18) {
                    rng.range(2_000, 30_000) as i64 // skipped
                } else if rng.chance(0.8) {
                    duration
                } else {
                    (duration as f64 * (0.5 + rng.f64() * 0.5)) as i64
                };
                if ts >= end_ms {
                    break;
                }
                day_events.push(Event {
                    user,
                    track,
                    ts_ms: ts,
                    ms_played,
                });
                ts += ms_played + rng.range(0, 4_000) as i64;
            }
        }
        day_events.sort_by_key(|e| e.ts_ms);
        for e in day_events.iter_mut() {
            // Events are identified by (user, ts, track): keep timestamps strictly increasing.
            if let Some(last) = events.last().map(|l: &Event| l.ts_ms)
                && e.ts_ms <= last
            {
                e.ts_ms = last + 1;
            }
            if e.ts_ms < end_ms {
                events.push(*e);
            }
        }
    }
    events
}

/// The name of genre number `g`.
pub(crate) fn genre_name(g: usize) -> &'static str {
    GENRES[g]
}

/// Generates a dataset into `out` (created if missing) and returns its manifest.
pub fn generate(config: &GenerateConfig, out: &Path) -> Result<DatasetManifest> {
    let catalog = build_catalog(config);
    let mut writer = DatasetWriter::create(out, config)?;
    writer.write_catalog(&catalog)?;
    for user in 0..config.users {
        let events = listener_events(user, config, &catalog);
        writer.add_listener_events(user, &events)?;
    }
    writer.finish(&catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenerateConfig {
        GenerateConfig {
            users: 3,
            years: 2,
            seed: 42,
            end: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            artists: 50,
        }
    }

    #[test]
    fn listener_events_are_deterministic_ordered_and_in_range() {
        let config = small();
        let catalog = build_catalog(&config);
        let a = listener_events(1, &config, &catalog);
        let b = listener_events(1, &config, &catalog);
        assert_eq!(a.len(), b.len());
        assert!(
            a.len() > 5_000,
            "about a year and more of daily listening: {}",
            a.len()
        );
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.ts_ms == y.ts_ms && x.track == y.track)
        );
        assert!(a.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let lo = (config.start() - epoch).num_days() * DAY_MS;
        let hi = (config.end - epoch).num_days() * DAY_MS;
        assert!(a.iter().all(|e| e.ts_ms >= lo && e.ts_ms < hi));
        let skipped = a
            .iter()
            .filter(|e| e.ms_played < catalog.tracks[e.track as usize].duration_ms / 4)
            .count();
        assert!(skipped * 10 > a.len(), "skips exist");
    }

    #[test]
    fn tastes_concentrate_on_favourites() {
        let config = small();
        let catalog = build_catalog(&config);
        let events = listener_events(0, &config, &catalog);
        let mut per_artist = std::collections::HashMap::new();
        for e in &events {
            *per_artist
                .entry(catalog.tracks[e.track as usize].artist)
                .or_insert(0) += 1;
        }
        let top = per_artist.values().max().copied().unwrap_or(0);
        assert!(top * 20 > events.len(), "a top artist stands out");
    }
}
