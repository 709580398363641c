from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE INDEX "idx_jobs_user_id_843017" ON "jobs" ("user_id", "status");"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP INDEX IF EXISTS "idx_jobs_user_id_843017";"""


MODELS_STATE = (
    "eJztXW1T4zgS/iuqfDmmKsNBYIBjr64qMJmFXYZsQWZva4cpo9hK4sWRvJJCyO3x31eS3x"
    "052CYJicdfmImkR5afbr10S2r/1RgTCzlst22aZIL5DZk2TsFfDQzHSPxHk9sEDei6UZ5M"
    "4LDvqOLQK6cSYZ9xCk0u0gfQYUgkWYiZ1Ha5TbAs7RJblAUuomDCED0F8BHajqwLQGyBAS"
    "X/Q1hWZRFT1GXjoUS1VeF/CJyCn4L7EHYPTIhBHwHmIsyb4N6r4h7YDIyQI6ok4lF4YGOb"
    "jZAF/iB9tisfMMH2nxNkcDJEfISoeMzXbyLZxhZ6Qiz46T4YA1tUk2BINsawLVmLyjT4zF"
    "UZl5h/UqXlC/QNkziTMU4h3BkfERxCxPvI1CHCiEKOrBh1eOI4PstBktdokcDpBIWttaIE"
    "Cw3gxJECkGivGVFawzCuuz3jttMzjMaccAJEjHk/ySRYClZyr4gYyia8b+0fHh+eHBwdno"
    "giqplhyvGz9+iIHg+oSLruNZ5VPuTQK6HojvgNhTvP8Jk9zCQ5AVsOzUFCxHOk1wGpe6tl"
    "+V+t1sHBcWvv4Ojkw+Hx8YeTvZDu+axFvJ9d/iipFwWI6KNe5w1kEXEf9cD8xEeYmvX8rM"
    "vhZfAQ6wAyoQ/NhymkljGXQ1pE21nk0DIvri5GPSL+KIFdijeE2NT1C3+w/yIq8Uf6rRqJ"
    "ngNVDFKj51M4DYfu+PgrXl68MuLq9c/bt+ftj53Gc4L7JNUya9wap1MghkP1vrJlsh0+lR"
    "fEsTKm1CBr4Xw6IvIpuSZTMW8BghGQEEAGAEFzJCc4NZXaYpplgjsxszLEuYPGyOuNiZm1"
    "l6oCSvwP4N6DWPdg4NguA+hJNMSZiaImAjsmdPmEqhn7n2J2pYJOyNC7106r4snaWfV8BK"
    "l+4IkQKbUWL7h1uixU6slwEB7ykfh5cLRgUPm1fXN+0b7ZOTh6lxxZrv2clsp6YZYdy3Vb"
    "wSk2xKxvpF/9QmbNU6zffTSavoj6OKoU+b4uf9/c++OahnpCxCiG9dzHUCnq+wK2KsUPU1"
    "Y3cWqJ7HavZM1jxv50PGZTtF5/+XzWudnZV4OPKGTzLE2nSHJiQM0w81HkcHuMMrQ9gUyR"
    "bvnQ3eA/2zj0iBe0utiZ+T1zgUB6l587t732518SUvnY7nVkTkulzlKpO+mZIawE/Peydw"
    "HkT/B797qj6CWMD6l6YlSu93tDtglOODEwmRrQik2IQWrAmq6PlZB6ErkEqW/YmLclQg44"
    "WSjlDXCCvHUXXoIbZM4IfMmw+0Qosof4ZzRbvWm3Gb1lycbdC4b18gzBy7FIz7AEw7zmIl"
    "PQlqVy2oKhbEGE0lCsMc++SjOqEYi58S1lrn0NFTE2J3/LNOKKGXC18VbSePNklX/sDcvX"
    "I69mnepCIbYCahuUX47ivjWZCdVtffiQQ3dFqUzlVXlJfqe2pSM4U1vD8rW2arR1JBYAI8"
    "3aOpPOCFDzqfUJFPXFBIgq0bluJ9hWuQbWupSormfg7T38b93XVrJMrI3ytRnlvqn0Spv8"
    "J9KvtkkedVu9RZ7W2drPsb1+Dl+ZNV6OSM2zfRzyPFY+D4fyawBftiINBNC8bo5A0WwLjV"
    "3CETZnxgOa5fR4NEGULnSRT1jtBXlrL4gvhwJUR4hVrSfeju/9PHzvZ/O9P7ecmBL6MHC8"
    "LpyX4Timgmu2o8McJB8dZpIss1LOJ0rGrsYK6qGnjDVbhKgEwYsMnM5vvYRtExC587n927"
    "uEfXPVvf4xKB4j/vyqe5YiHKOhmEAekVGceQ20FkEJEYhHY+aoubW4ELTgUmLYou3hVUpB"
    "NrPACJ+CVaIDrHomdQmzS445GmglKF+3tqPBAJmKyFdMAAsrqcVSQiym/hRq9jnIKp5AXd"
    "peRr3TVu+0bS6fjCNXY65n77MF5Ws2dVtog6HGb+oQmDVyeuVTXA4kYAvZXEDVx+6Xs6sO"
    "+OWmc355e9m9Tu6DqUzlxQtPLt902ldpVYVj19E5phf4liJIJVYCq3Z8MHOErElRkuOgmu"
    "YcNCunexGKQ0AF6V3J8ab6AElj/QdIXGoTavNZgeVEHFIl5pe2ohhQor0RuOhuVIipb0YV"
    "uRlFWMGrlwGiSoq77jNnYsobFr53GYHqa5dlmR9S6GrcEj/ddq/1rIeA9Pk+2+Tg/8Cx2T"
    "aq/QIeJRWLfWtpN1ozeTxPVpD2raVPOhRYBGqgVdhiSfn5Wyd5HP2tk2xPv8xLki5P1SBc"
    "6ABIDFI9kley5IacC/3kRZxJcUhl4tQs7woMJXIkYYb0uRVaU6dwFZokl0+u6BhluPVhNb"
    "Xz1CJKCRWcWZpgYdkDbhJVvTF3+V4kj7Gx0EY41FC9YMc0DawC22vfJK1vy3x/t2Usm7mQ"
    "S393CbnPgetoGpscTYNxSMt18CSylvImSzmIQltCzCloLedNlnN9Da+OjbOW3rLKO2MxN2"
    "IYUSblNvdxn36+QZnngTURbyrC9fMqb9VdIWuIaAdzOsu4XZcq0Vx0y85RZQ0kCtt5IwqJ"
    "2hC23hOxtgZj8oiYjA/rx2+f2nwEZPjZPnRkF2MADjiiKgJtI0Vqox2riCKTUBVpVkadld"
    "VGtTY11VJ5ns6v3Oa7d/gO30uU9EnfgzF8EGVU2FtVVei05qfgTkXSPf33H6T/nzvRprsg"
    "gmY8yQ9dGybdYUJVA0zoOCrivHiOCiEPwZBCzHPGuI1fNix4TXDRXlTeCcIfCRb1qU0IIL"
    "+WTajs24MPdjEvfVC+gsdiln/hoY4u/EZbreFXEAw1ahaUwDy4FkVpUXjfRSgjhzSyFkJp"
    "Iaw95szLdvX2X8mPL0a9xVgRguOYykU92N/byzOX7u1lT6YyL8kyFavUYpc0I0QV9lvWcK"
    "Jgu7ZY1st+dfdYak9d7albLb9bHt2pRx4QzvBAhXnNFz4QKM+wcFk4r+tJQYAHAYwLbbEA"
    "ZOD2ov2+9eEIWPYQMT4X/KnRxiAObcag8nNISfgPytEjZOAVlh8MZCMyxeojR6/9llGhIa"
    "Vibp2VfRfQk1uRVVCEqNw6c/lHfOoV0Pe4AkJPri1qKyH1JLKCUt8SKefakqboUcxyZTp3"
    "ElkfPNhkKdfmTG3OrKW3bKs5ExCvsWZiMsk2ZuRr5TRiHDK0scZGASpjF9zLumQbvL3sHW"
    "mNyJ/AxqLIFFFgyq+qggeEXKZyGPC0QGW8F5UL60iFBnNmd5hggB4RnQGxQLSxaM90JLRK"
    "pHj72arDy3+8gxq1fbOB9k2gEEUsnDimghvTy7dy4r2uDNGV3bhYQWRbyNiUiCF7BFnB7y"
    "ulgBXU7JVsYlDiFBo9gvLr4zdcQW3joZbaQ5JNfbU8JHMmQJ5zsvLA4SuPyV6IKqplGCQD"
    "EtQniV/kKPisRXmGKvd5mQQ/3lnm1zE0f3a6ikxFW27lmYrv8VWFo0IOhtjJSjMjVnHAZx"
    "ejHhF/Xma17VWVj9fN9JfqaS3gimkjapujhsYT4+c0F+4qR2Ve8sRkv1ntANksB8gjoqzg"
    "xwhikNpIzBk7x9UEeMlm2C9eQXZXclRTPFFeQJpnODvYWQxShzsrGO6sgKG2/H2F578BJM"
    "SlUA=="
)
