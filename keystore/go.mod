module github.com/saferetry/saferetry/keystore

go 1.25

require github.com/saferetry/saferetry v0.0.0

replace github.com/saferetry/saferetry => ../
