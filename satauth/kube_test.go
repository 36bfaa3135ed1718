package satauth_test

func stopKube() {}
