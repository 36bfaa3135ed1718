module github.com/mqttauth/mqttauth/internal/tools

go 1.25.0

require golang.org/x/mod v0.38.0
