package notify

// CheckURL is exported to the black-box fuzz test.
var CheckURL = checkURL
