from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "accounts" ADD "open_holds" INT NOT NULL DEFAULT 0;
        UPDATE "accounts" SET "open_holds" = h."n" FROM (SELECT "user_id", COUNT(*) AS "n"
            FROM "holds" WHERE NOT "settled" GROUP BY "user_id") h
            WHERE "accounts"."user_id" = h."user_id";"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "accounts" DROP COLUMN "open_holds";"""


MODELS_STATE = (
    "eJztXf9T2zgW/1c0+WXpTMpBoMB1b24mpemWXUp2IL3b2dIJwlYSbxzJKymk2T3+93uSvz"
    "t2sE0SEtczHQqSPrL9eU/Se0/f/m5MmElssd82DDal8prNGm/R3w2KJwR+ScltogZ2nDBP"
    "JUh8b+vi2C2nE/G9kBwbEtIH2BYEkkwiDG450mJUlXaYBWWRQziaCsLfIvyALVvVhTA10Y"
    "CzvwhVVZnMgLosOlSoti78A+A0/C26C2B3yMAU3RMkHEJlE925VdwhS6ARsaFKBo+iA4ta"
    "YkRM9Ae7F/u39I5B8f6I2aaAGvQHIDki/nOmVBApbSivi6A9Ron70rGaXjWRYIDDUoMN7N"
    "xSRpOPU6+C4SHUtBQNCP7JEaRxNmui2cgyRog8ED5HhA4teA4nr40RMcbCLUlUwR/ELaVk"
    "RoREUFS41RgEWdJ7Qws+wGbGeF+RN6XWn1PSl2xIAM+Bwi9fIdmiJvlGhP+nM+4PLKAoJn"
    "1FQN8yVS06sy/njs64oPKDLq2Ec983mD2d0ATCmcsRowEEZKVSh4QSjiUxI2pBp7btaZCf"
    "5L40JEg+JcHbmmGCSQZ4aivlUmj3NcK0Rr9/1e31bzq9fr+xoHg+IqJVXhLIRSmt0itNxF"
    "C9wuvW4fHp8dnRyfEZFNGvGaScPrqPDulxgZqkq17jUedjid0Smu6Q30BxFxl+Zw0zSY7B"
    "VkOznxDyHLZZn9SD9bL8z1br6Oi0dXB0cvbm+PT0zdlBQPdi1jLe3138pKiHAgz6H7dj8m"
    "URch/2LvmJDzE16+VYD3vaAp1KHFQZ6p/Vrag+ezCO9Coq4R4b4xnmZn8hh7VYag+k+utF"
    "SXQp6TH4ocVxAe+OYXhJ4d6zDj5DJZ5psFPd+6OvaH5q+HyOZ8F4GB3U4OPhk4nUn3/evj"
    "lvv+80HmPcx6lWWZPWJJmCKR7q71Vvpt7Do/IjaHmGDeZnLTXAglbytPWljAllySgIYgNE"
    "MNgeYKJo20tZEAK4A1PMNX4mxG1nMVOsl6gCK/yP6M6zl+7QwLYcgcg3eBF77hope2AYyS"
    "nXJt4/wBzjQCcW5NVzbRV4cqqpcj7CPL1bCREJtYYP3DldBpX61rfBaJQj+PPoZEkH8p/2"
    "9fnH9vXe0cmreHd95eW0dNYTpstE2ckF7ZYAs7k+fP3W4YZHUK/5pGj6MuqjqFLke7r8fX"
    "Pv9Wsp1DMGvRhN5z6CSlB/D7B1KX6Qsr6BM5XIbvdS1TwR4k/bZTZB69XnT+8613uHuvOB"
    "QpbM0nROFCd9nNLNvIccaU1IhrbHkAnSTQ+67/+yi10PfKDZpfbca5lLBNK7+NS56bU//R"
    "qTyvt2r6NyWjp1nkjdS44MQSXovxe9j0j9iX7vXnU0vUzIIddPDMv1fm+od8JTyfqUzfrY"
    "jAyIfqrPWlobKyH1OHIFUt+yPm9HhOxzslTKWxBZeukmvA4n8CnH7gPjxBrSX8h8/a7ddr"
    "SWFTt3TzjWq3MELyaQnuEJBnnNZa6gpUrl9AUD2aIQlUJxinv2RblRDV/Mja8Jd+1LoIiR"
    "MflrphNXzIGrnbeSzpsrq/x9b1C+7nlT7FQHg9gKqK1ffjWK+9JkxlS39eZNDt2FUpnKq/"
    "Pi/M4sM43gTG0NytfamqKtIzAARim2dSadIaDmMzUmUDQW4yOqROemg2A7FRrYqClR3cjA"
    "y0f4X7qtrcVMrJ3yjTnlnqv0TJ/8Z3ZfbZc8bLbpHnlSZ+s4x+7GOTxlTolyhGqeHeNQK+"
    "ryRTh0XAN5slUr5nxo3jCHr2iWSSYOk4Qa8/6YzHNGPJooTAddlFNRR0FeOgriyaEA1SFi"
    "XfbEy/F9mIfvw2y+DxfMiRnj44HtNuG8DEcxFbTZTo5zkHxynEmyykoEnzibOCleUI98y7"
    "DZQkQlCF7m4HR+68V8G5/IvU/t317F/JvL7tVPfvEI8eeX3XcJwikZwgDyQPrFmU+B1iIo"
    "IQJ4NBW2HluLCyEVXEoMOzQ9vE4pqNcs0MMnYJVoAOseSR0mrJJ9Tgq0EpRvWtvJYEAMTe"
    "QzBoClldRiKSEWI30VavY6yCquQF3ZXEY901bPtG0vn0ISp8i2oaB8zWbaFNpgmBI3tRnO"
    "6jnd8gkuBwqwg2wuoep99/O7yw769bpzfnFz0b2Kz4PpTB3FC1YuX3fal0lVxRPHTgtML4"
    "kthZBKWALrDnwIY0TMaVGSo6Ca5hw066B7EYoDQAXpXcvypnoBSWPzC0gcbjFuyXkBcyIK"
    "qRLzK7MoBpyl7ghctjcqwNQ7o4rsjGKi4NZLH1Elxd30mjMY8oaF912GoHrbZVnmhxw7KW"
    "GJn2+6V+msB4Dk+j7LkOh/yLbELqr9Eh4VFctja8kwWjO+PE9VkIytJVc6FDACU6BVmGJJ"
    "xPlbZ3kC/a2z7Ei/youTrlbVEFpoAUgEUj2S12JyYylBP2WRYFIUUp9As2hOM9WTiL6KuR"
    "WyqRO4Cg2SqycXGkYZbj1YTe0itYRzxoEzM+UEtuwON46qXp+7+iiSy9gEtBEPU6heMmOa"
    "BFaB7Y1Pkta7Zb6/3TKmJRwsVby7hNwXwPVpGtt8moaQmJdr4HFkLeVtlrJ/jnAJMSegtZ"
    "y3Wc71Nrz6bJyNtJZ17hmLhBGDE2USYXMP9+GXa5K5HjjlxJuKcP24zl11l8QcEt6hks8z"
    "dtclSjSX7bKzddk+gcJW3hOFoDZCzdcMbGs0YQ9EqPNhvQP/Z5Yc6bPs77GtmphAeCAJ1y"
    "fQNhKkNtqRijgxGNcnzapTZ1W1Ya3NlGq5Wk/nVW7J/Vt6S+8USsWk79AEj6GMPvZWVxUE"
    "reVbdKtP0n37rz/Y/b9v4Z1u/RM0o0ne0bVB0i1l3Dv737b11QHwHH3nAEZDjqnMecZtdL"
    "NhwW2Cy+ai8g4QXk+wrE1tw6n8G5mEyt49OLaKRen98hVcFrP6DQ/16cIvNNUaXC3R171m"
    "QQksgmtRlBaFe9lEGTkkkbUQSgth42fOPO1X7/6W/Kgx6hpjRQiOYip36sHhwUGesfTgIH"
    "swVXlxljlYqcU2aYaIKsy3bGBFwW5NsWyW/erOsdSRujpSt15+d/x0px4bE5oRgQrymk/c"
    "KKnWsEhVOG/oSUOQC0FCgraYCAt087H9uvXmBJnWkAi5cPhTo01RFNqMQNV1SHH4j+5ljH"
    "jmFlbXOooRm7k3MT73LqNCXUrFwjpru2zRlVsRKyhEVM7OXP0Sn9oC+h4tIPLNsaC2ElKP"
    "Iyso9R2Rcq4paU4eYJQr07jjyHrhwTZLuXZnandmI61lV90Zn/gUbyYik2xnRn1WTifGZk"
    "OLpvgoSGfsoztVl3oHdy57T3kj6k9kUSgyIxwZ6lZVNCbEETpHXWSvtEBnvIbKwTvSR4PZ"
    "c31RffTaeXUVPWgVpLjz2brBq//chRq1f7OF/o2vEEU8nCimghPTq/dyoq2uDNGVnbhYw8"
    "m2WIgZgy57hEXB+5USwApq9lomMTizC/UefvnN8RtYULu4qKWOkGRTX60IyYILkGedrFpw"
    "+Mxlsh+himo5BvEDCeqVxE9y5F9rUZ6hyl0vE+PHXcv8PIYW105Xkalwyq08U9E5vqpwVC"
    "jAEFlZaWScVezz2aWkx+DH06y23ary8bqd8dJ0WguEYtqEW8aokRKJ8XKaS2eVwzJPRWKy"
    "v6wOgGxXAOSBcFHwMoIIpHYSc56d46Qc8JLNsFe8guyuZakmPFFtQFpkOPuwswikPu6s4H"
    "FnBRy11c8rPP4fAydg+A=="
)
