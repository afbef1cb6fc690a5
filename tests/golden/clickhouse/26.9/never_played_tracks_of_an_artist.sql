SELECT "track_uri" AS "__sluice_k0" FROM (SELECT "track_first_last"."track_uri" FROM "track_first_last" WHERE ("track_first_last"."user_id" = 'u0002')) AS "derived_projection" GROUP BY "track_uri"
