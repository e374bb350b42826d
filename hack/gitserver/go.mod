module strata.dev/hack/gitserver

go 1.26.0
