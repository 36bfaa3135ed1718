module github.com/mqttauth/mqttauth/examples

go 1.25.0

require github.com/mqttauth/mqttauth v0.0.0

replace github.com/mqttauth/mqttauth => ../
